"""Just-in-time build of the C++/CUDA extension (csrc/) into the user cache, with one-warning fallback.

The build directory name carries the torch version, Python version, CUDA/CPU flavour and a hash of the
sources, so upgrading torch or editing csrc/ never loads a stale binary. torch's `load` holds a file
lock in that directory, so concurrent first uses build once. Only the CPU sources are compiled when
torch has no CUDA (or nvcc is missing); a failed CUDA build is retried CPU-only.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
import warnings
from pathlib import Path

import torch

from ..models import cache_dir

NAME = "mule_topk_union"
CPU_SOURCES = ("binding.cpp", "topk_union_loss_cpu.cpp")
CUDA_SOURCES = ("topk_union_loss.cu",)
HEADERS = ("topk_union_loss.h",)

_lock = threading.Lock()
_state: dict = {}  # "ext": module or None, "error": str


class ExtensionUnavailable(RuntimeError):
    """The fused kernels could not be built or loaded (the message carries the build error)."""


def csrc_dir() -> Path:
    """csrc/ next to the package in a source/editable checkout, else a copy packaged inside mule_cli."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "csrc", here.parents[1] / "csrc"):
        if (candidate / CPU_SOURCES[0]).is_file():
            return candidate
    raise ExtensionUnavailable(f"csrc/ with {CPU_SOURCES[0]} not found next to {here.parents[1]}")


def _want_cuda() -> bool:
    if os.environ.get("MULE_KERNELS_NO_CUDA"):
        return False
    from torch.utils.cpp_extension import CUDA_HOME

    return torch.version.cuda is not None and CUDA_HOME is not None


def build_dir(with_cuda: bool, sources: list[Path]) -> Path:
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    flavour = f"cu{torch.version.cuda}" if with_cuda else "cpu"
    tag = f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-{flavour}-{digest.hexdigest()[:12]}"
    return cache_dir() / "extensions" / re.sub(r"[^A-Za-z0-9._-]", "_", tag)


def _build(with_cuda: bool):
    from torch.utils.cpp_extension import load

    root = csrc_dir()
    names = CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())
    sources = [root / n for n in names]
    directory = build_dir(with_cuda, sources + [root / h for h in HEADERS])
    directory.mkdir(parents=True, exist_ok=True)
    defines = ["-DMULE_WITH_CUDA"] if with_cuda else []
    return load(
        name=NAME + ("_cuda" if with_cuda else "_cpu"),
        sources=[str(s) for s in sources],
        extra_cflags=["-O3", "-fopenmp", *defines],
        extra_ldflags=["-fopenmp"],
        extra_cuda_cflags=["-O3", *defines] if with_cuda else None,
        extra_include_paths=[str(root)],
        build_directory=str(directory),
        verbose=bool(os.environ.get("MULE_KERNELS_VERBOSE")),
    )


def load_extension():
    """The compiled extension module; raises ExtensionUnavailable (cached) when it cannot be built."""
    with _lock:
        if "ext" in _state:
            if _state["ext"] is None:
                raise ExtensionUnavailable(_state["error"])
            return _state["ext"]
        errors = []
        for with_cuda in ([True, False] if _want_cuda() else [False]):
            try:
                _state["ext"] = _build(with_cuda)
                return _state["ext"]
            except Exception as exc:  # compiler missing, compile error, ...: keep the message
                errors.append(f"{'CUDA' if with_cuda else 'CPU'} build: {type(exc).__name__}: {exc}".strip())
        _state["ext"] = None
        _state["error"] = "could not build the fused loss extension from " + str(csrc_dir_or_none()) + ": " + " | ".join(errors)
        raise ExtensionUnavailable(_state["error"])


def csrc_dir_or_none():
    try:
        return csrc_dir()
    except ExtensionUnavailable:
        return None


def extension_or_none():
    """The extension, or None after emitting ONE warning per process that the reference is used instead."""
    try:
        return load_extension()
    except ExtensionUnavailable as exc:
        if not _state.get("warned"):
            _state["warned"] = True
            warnings.warn(f"{exc}; falling back to the pure-PyTorch reference loss", RuntimeWarning, stacklevel=3)
        return None


def reset() -> None:
    """Forget the cached build result (tests use it to simulate a failed build)."""
    with _lock:
        _state.clear()
