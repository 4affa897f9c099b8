"""Top-K-union Smooth-L1 distillation loss (SPEC §4): fused C++/CUDA op with a pure-PyTorch reference.

    from mule_cli.kernels import topk_union_smooth_l1_loss, backend
    loss = topk_union_smooth_l1_loss(student_logits, teacher_logits, k=20, beta=1.0, valid=mask)
    loss.backward()   # gradient to the student only

`topk_union_smooth_l1_from_hidden` (mule_cli/kernels/chunked.py) takes hidden states and lm_head weights
instead and never materialises the full [N, V] logits.
"""

from __future__ import annotations

import torch

from . import build
from .reference import NonFiniteLogits, check_args, nonfinite_error, reference_loss

__all__ = ["NonFiniteLogits", "topk_union_smooth_l1_loss", "topk_union_smooth_l1_from_hidden", "backend",
           "reference_loss", "kernel_inputs"]

IMPLS = ("auto", "fused", "reference")
_FUSED_DTYPES = {
    "cpu": (torch.float32, torch.bfloat16, torch.float16, torch.float64),
    "cuda": (torch.float32, torch.bfloat16, torch.float16),
}
_HALF = (torch.bfloat16, torch.float16)
CUDA_MAX_K = 256


class Backend(str):
    """The name of an implementation ("fused-cpu", "fused-cuda", "reference"), compared as a plain str;
    `.reason` says why it is "reference" where a fused kernel was expected (e.g. the CUDA build's error)."""

    reason: str | None

    def __new__(cls, name: str, reason: str | None = None):
        self = super().__new__(cls, name)
        self.reason = reason
        return self


def backend(device: str | torch.device = "cpu") -> Backend:
    """Implementation that impl="auto" uses on `device`: "fused-cpu", "fused-cuda" or "reference".

    The first call builds the extension (once per torch/toolkit version, cached under the mule cache); if
    the build fails it warns once and reports "reference". A failed CUDA build (the CPU kernel still
    built) is printed once on stderr; `backend("cuda").reason` keeps its error.
    """
    kind = torch.device(device).type
    if kind not in _FUSED_DTYPES:
        return Backend("reference", f"no fused kernel for {kind} tensors")
    if build.extension_or_none() is None:
        return Backend("reference", build._state.get("error"))
    if kind not in build.loaded_kernels():
        return Backend("reference", build.cuda_unavailable_reason())
    return Backend(f"fused-{kind}")


def _device_type(t: torch.Tensor) -> str:
    """The device type the dispatch decides on (one place, so tests can exercise the CUDA branch on CPU)."""
    return t.device.type


def _kernel_dtypes(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """The (student, teacher) dtypes the kernels are handed; see kernel_inputs."""
    if teacher.dtype == student.dtype or (teacher.dtype == torch.float32 and student.dtype in _HALF):
        return student.dtype, teacher.dtype
    wide = torch.promote_types(student.dtype, teacher.dtype)
    return wide, wide


def kernel_inputs(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) as the kernels read them — every value unchanged.

    The rule shared with the reference: both inputs enter the arithmetic at their exact values, in fp32
    (fp64 when either is fp64); neither is rounded to the other's dtype (rounding an fp32 teacher to a
    bf16 student's dtype would move the loss and even the top-K for no gain). The kernels up-cast per
    element as they read, so pairs of one dtype and a half-precision student with an fp32 teacher go in
    without a copy; any other mix is first up-cast (exactly) to the wider dtype.
    """
    s_dtype, t_dtype = _kernel_dtypes(student, teacher)
    return student.to(s_dtype), teacher.to(t_dtype)


def _use_fused(student: torch.Tensor, dtype: torch.dtype, k: int, impl: str) -> bool:
    """Whether the fused op serves `student` read as `dtype`; impl="fused" raises where it cannot.

    Under torch.compile the answer comes from the already-loaded extension's Python state only — no
    build, no lock and no pybind call in the graph (fullgraph=True fails on any of them); call the loss
    once eagerly, or backend(), first to build it.
    """
    kind = _device_type(student)
    supported = dtype in _FUSED_DTYPES.get(kind, ()) and not (kind == "cuda" and k > CUDA_MAX_K)
    if impl == "fused" and not supported:
        raise ValueError(f"the fused kernel does not support {dtype} on {kind} with k={k}")
    if torch.compiler.is_compiling():
        ready = kind in build.loaded_kernels()
        if impl == "fused" and not ready:
            raise RuntimeError("impl='fused' under torch.compile needs the extension built first: call backend()")
        return supported and ready
    if impl == "auto":
        return supported and backend(kind).startswith("fused")
    build.load_extension()  # raises ExtensionUnavailable with the build log
    return True


def topk_union_smooth_l1_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    k: int = 20,
    beta: float = 1.0,
    valid: torch.Tensor | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Mean over valid positions of (1/|U|) Σ_{j∈U} huber_β(s_j − t_j), U = topK(teacher) ∪ topK(student).

    student, teacher: [N, V] or [B, T, V] logits (float32, bfloat16, float16; float64 too) of the same
    shape; the dtypes may differ (see `kernel_inputs`: each is read at its own precision). Ties in the
    top-K are broken by the lower vocabulary index. valid: optional bool mask over positions ([N] or
    [B, T]); masked positions are never read. Gradient flows to `student` only, in its dtype.

    Returns a float32 scalar (float64 if either input is float64); arithmetic is float32 for every other
    dtype. Edge cases: every position masked -> 0.0 with a zero gradient; k > V, k < 1 or beta <= 0 ->
    ValueError; NaN or ±inf anywhere in a VALID position of student or teacher -> ValueError naming
    the position (on CUDA this check synchronises once per call).

    impl: "fused" (C++/CUDA kernel; RuntimeError if it cannot be built), "reference" (pure PyTorch), or
    "auto" (fused when available for this device/dtype/k — the CUDA kernel needs k <= 256 and no
    float64 — else the reference; a failed build warns once).
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    check_args(student, teacher, k, beta, valid)
    k = int(k)
    if impl == "reference":
        return reference_loss(student, teacher, k, beta, valid)
    if not _use_fused(student, _kernel_dtypes(student, teacher)[0], k, impl):
        return reference_loss(student, teacher, k, beta, valid)
    from .op import topk_union_smooth_l1

    s_in, t_in = kernel_inputs(student, teacher.detach())
    s3 = s_in if s_in.dim() == 3 else s_in.unsqueeze(0)
    t3 = t_in if t_in.dim() == 3 else t_in.unsqueeze(0)
    if valid is None:
        mask = torch.ones(s3.shape[:2], dtype=torch.bool, device=s3.device)
    else:
        mask = valid.to(s3.device).reshape(s3.shape[:2])
    loss, _, val = topk_union_smooth_l1(s3, t3, mask, k, float(beta))
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(loss)):
        raise nonfinite_error(int(torch.isnan(val).any(-1).nonzero()[0, 0]))
    return loss


def topk_union_smooth_l1_from_hidden(*args, **kwargs):
    """See mule_cli.kernels.chunked.topk_union_smooth_l1_from_hidden (imported lazily)."""
    from .chunked import topk_union_smooth_l1_from_hidden as impl

    return impl(*args, **kwargs)
