"""Just-in-time build of the C++/CUDA extension (csrc/) into the user cache, with one-warning fallback.

The build directory name carries the torch version, Python version, CUDA/CPU flavour and a hash of the
sources — and, for a CUDA build, of the nvcc version and the target architectures — so upgrading torch
or the toolkit, editing csrc/ or moving the cache to other GPUs never loads a stale binary. torch's
`load` holds a file lock in that directory, so concurrent first uses build once. Only the CPU sources
are compiled when torch has no CUDA (or nvcc is missing); a failed CUDA build is reported once on
stderr (the tail of the nvcc/ninja log), kept for `kernels.backend("cuda")`, and retried CPU-only.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import torch

from ..models import cache_dir

NAME = "mule_topk_union"
CPU_SOURCES = ("binding.cpp", "topk_union_loss_cpu.cpp")
CUDA_SOURCES = ("topk_union_loss.cu",)
HEADERS = ("topk_union_loss.h", "topk_union_loss_device.cuh")  # in the cache key: an edit rebuilds
LOG_TAIL_LINES = 25

_lock = threading.Lock()
# "ext": module or None, "error": str (nothing built), "kernels": device types the loaded extension
# serves, "cuda_error": why it has no CUDA kernel (None when it has one), "warned": bool
_state: dict = {}


class ExtensionUnavailable(RuntimeError):
    """The fused kernels could not be built or loaded (the message carries the build error)."""


def csrc_dir() -> Path:
    """csrc/ next to the package in a source/editable checkout, else a copy packaged inside mule_cli."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "csrc", here.parents[1] / "csrc"):
        if (candidate / CPU_SOURCES[0]).is_file():
            return candidate
    raise ExtensionUnavailable(f"csrc/ with {CPU_SOURCES[0]} not found next to {here.parents[1]}")


def cuda_skip_reason() -> str | None:
    """Why no CUDA build is attempted here, or None when one is."""
    if os.environ.get("MULE_KERNELS_NO_CUDA"):
        return "MULE_KERNELS_NO_CUDA is set"
    if torch.version.cuda is None:
        return "this torch build has no CUDA"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return "no CUDA toolkit found (nvcc; set CUDA_HOME)"
    return None


def nvcc_version() -> str:
    """`nvcc --version` of the compiler torch's build will use (PYTORCH_NVCC, else CUDA_HOME/bin/nvcc).

    Why in the cache key: torch.version.cuda is the toolkit torch was built with, not the nvcc on this
    machine; a binary from another nvcc may need a newer driver or miss this toolkit's fixes. (Run once
    per process: the extension is loaded once.)
    """
    from torch.utils.cpp_extension import CUDA_HOME

    nvcc = os.environ.get("PYTORCH_NVCC") or (str(Path(CUDA_HOME) / "bin" / "nvcc") if CUDA_HOME else "nvcc")
    try:
        return subprocess.run([*nvcc.split(), "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cuda_archs() -> str:
    """The GPU architectures a CUDA build targets: TORCH_CUDA_ARCH_LIST, else (as torch does) the
    visible GPUs'. Why in the cache key: a binary built for other GPUs fails at launch with "no kernel
    image is available" — e.g. a cache directory shared by nodes with different GPUs."""
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
    if archs and archs != "native":
        return archs
    if not torch.cuda.is_available():
        return archs
    caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    return ";".join(f"{major}.{minor}" for major, minor in caps)


def build_dir(with_cuda: bool, sources: list[Path]) -> Path:
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    if with_cuda:
        digest.update(f"\0archs={cuda_archs()}\0nvcc={nvcc_version()}".encode())
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


def log_tail(exc: BaseException, lines: int = LOG_TAIL_LINES) -> str:
    """`Type: message` of a build error, cut to its first line and its last `lines`: torch puts the whole
    ninja log (compile commands included) in the message, and the compiler's error is at its end."""
    text = [line[:500] for line in f"{type(exc).__name__}: {exc}".strip().splitlines()]
    return "\n".join(text if len(text) <= lines + 1 else [text[0], "...", *text[-lines:]])


def _report_cuda_failure(error: str) -> None:
    """Say once, on stderr, that CUDA logits will use the slow reference — otherwise the only trace of
    a broken nvcc setup is `backend("cuda") == "reference"`."""
    print(f"mule: the CUDA kernel of the fused loss did not build; CUDA logits use the pure-PyTorch "
          f"reference loss (same values, slower). MULE_KERNELS_VERBOSE=1 shows the whole build log.\n"
          f"{error}", file=sys.stderr, flush=True)


def load_extension():
    """The compiled extension module; raises ExtensionUnavailable (cached) when it cannot be built.

    A failed CUDA build is retried CPU-only; when that works, the CUDA error is printed once and kept
    (cuda_unavailable_reason). When nothing builds, the exception carries every error instead."""
    with _lock:
        if "ext" in _state:
            if _state["ext"] is None:
                raise ExtensionUnavailable(_state["error"])
            return _state["ext"]
        skip = cuda_skip_reason()
        errors: dict[str, str] = {}
        ext = None
        for flavour in (["CUDA", "CPU"] if skip is None else ["CPU"]):
            try:
                ext = _build(flavour == "CUDA")
                break
            except Exception as exc:  # compiler missing, compile error, ...: keep the end of the log
                errors[flavour] = f"{flavour} build: {log_tail(exc)}"
        if ext is None:
            _state.update(ext=None, kernels=(), cuda_error=skip or errors["CUDA"])
            _state["error"] = (f"could not build the fused loss extension from {csrc_dir_or_none()}: "
                               + " | ".join(errors.values()))
            raise ExtensionUnavailable(_state["error"])
        cuda = bool(ext.has_cuda())  # read once here: no pybind call is ever traced by torch.compile
        _state.update(ext=ext, kernels=("cpu", "cuda") if cuda else ("cpu",),
                      cuda_error=None if cuda else skip or errors.get("CUDA"))
        if "CUDA" in errors:
            _report_cuda_failure(errors["CUDA"])
        return ext


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


def loaded_kernels() -> tuple[str, ...]:
    """Device types ("cpu", "cuda") the ALREADY loaded extension has kernels for; () before a load.

    Plain Python state, so torch.compile(fullgraph=True) traces it (a pybind call would break the graph)."""
    return _state.get("kernels", ())


def cuda_unavailable_reason() -> str | None:
    """Why the loaded (or failed) extension has no CUDA kernel — the kept build error, or why no CUDA
    build was tried; None when it has one or nothing was loaded yet."""
    return _state.get("cuda_error")


def reset() -> None:
    """Forget the cached build result (tests use it to simulate a failed build)."""
    with _lock:
        _state.clear()
