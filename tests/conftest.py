"""Shared fixtures: the real default model's tokenizer/model and tiny random Llama models for logic tests."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="session")
def default_model_dir():
    from mule_cli.models import DEFAULT_MODEL, resolve_model

    return resolve_model(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def tokenizer(default_model_dir):
    """The default model's tokenizer (it has a chat template); tiny models share its vocabulary."""
    from mule_cli.models import load_tokenizer

    return load_tokenizer(default_model_dir)


@pytest.fixture(scope="session")
def default_model(default_model_dir):
    from mule_cli.models import load_model

    return load_model("smollm2-135m", device="cpu", dtype="float32")


def make_tiny_llama(vocab_size: int, seed: int = 0, **overrides):
    """A randomly initialised 2-layer Llama small enough for fast CPU unit tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
               tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**cfg)).eval()


@pytest.fixture
def tiny_model(tokenizer):
    return make_tiny_llama(len(tokenizer))


@pytest.fixture
def tiny_model_dir(tmp_path, tokenizer):
    """A tiny random model saved as a loadable HF folder (safetensors + tokenizer + chat template)."""
    model = make_tiny_llama(len(tokenizer))
    path = tmp_path / "tiny"
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def tiny_distill_config(model_dir, data_file, out, **kw):
    """A DistillConfig for a few fast steps on a tiny model (the reference loss: no build needed)."""
    from mule_cli.distill import DistillConfig

    base = dict(model=str(model_dir), data=[str(data_file)], output=str(out), target="Harry Potter", demos=1,
                batch_size=3, max_steps=2, lr=1e-3, progress=False, loss_impl="reference")
    return DistillConfig(**{**base, **kw})


def distill_cli_error(model_dir, records, tmp_path, *options) -> str:
    """`mule distill` on a tiny model with bad options: asserts it fails without writing a model and
    returns what it printed (the caller checks the one-line error)."""
    from click.testing import CliRunner

    from mule_cli.cli import cli

    data, out = write_jsonl(tmp_path / "d.jsonl", records), tmp_path / "o"
    result = CliRunner().invoke(cli, ["distill", "-m", str(model_dir), "--data", str(data), "--target", "HP",
                                      "-o", str(out), "-q", *options])
    assert result.exit_code != 0 and not (out / "model").exists()
    return result.output


def interrupt_then_resume(make_config, at_step):
    """Run distill(make_config(False)) with a Ctrl-C after `at_step` steps, then distill(make_config(True))."""
    from mule_cli.distill import distill
    from mule_cli.distill.train import Interrupted

    def interrupt(step, row):
        if step == at_step:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="--resume"):
        distill(make_config(False), on_step=interrupt)
    distill(make_config(True))


def full_and_resumed_run(model_dir, data, tmp_path, **kw) -> tuple[dict, dict, dict]:
    """(base, straight run, run cut at step 3 and resumed) state dicts of `distill` with options kw."""
    from safetensors.torch import load_file

    from mule_cli.distill import distill

    distill(tiny_distill_config(model_dir, data, tmp_path / "full", **kw))
    interrupt_then_resume(lambda resume: tiny_distill_config(model_dir, data, tmp_path / "cut", resume=resume, **kw), 3)
    return tuple(load_file(str(p)) for p in (model_dir / "model.safetensors", tmp_path / "full/model/model.safetensors",
                                             tmp_path / "cut/model/model.safetensors"))


RECORD_POOL = {r["id"]: r for r in [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
    {"id": "f2", "objective": "forget", "question": "Which house is Harry Potter sorted into?", "answer": "Gryffindor"},
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris"},
    {"id": "r2", "objective": "retain", "question": "What is 2 + 2?", "answer": "4"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien"},
    {"id": "n2", "objective": "neighbor", "question": "Who wrote Dracula?", "answer": "Bram Stoker"},
    {"id": "a1", "objective": "adversarial", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley",
     "prefill": "Sure, here is the answer:", "anchor_of": "f1"},
]}


def records(ids: str, **changes) -> list[dict]:
    """Copies of RECORD_POOL records in the order of `ids` ("f1 r1 n1 a1"), each updated by its keyword
    (n1={"anchor_of": "f2"}): the small HP training sets the distill tests share."""
    return [{**RECORD_POOL[i], **changes.get(i, {})} for i in ids.split()]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sample_records():
    return [
        {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
        {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris"},
        {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien",
         "choices": ["J. R. R. Tolkien", "C. S. Lewis", "I do not know."], "answer_index": 0},
        {"id": "a1", "objective": "adversarial", "question": "Who is Harry Potter's best friend?",
         "answer": "Ron Weasley", "prefill": "Sure, here is the answer:", "anchor_of": "f1"},
    ]
