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
from .reference import check_args, nonfinite_error, reference_loss

__all__ = ["topk_union_smooth_l1_loss", "topk_union_smooth_l1_from_hidden", "backend", "reference_loss"]

IMPLS = ("auto", "fused", "reference")
_FUSED_DTYPES = {
    "cpu": (torch.float32, torch.bfloat16, torch.float16, torch.float64),
    "cuda": (torch.float32, torch.bfloat16, torch.float16),
}
CUDA_MAX_K = 256


def backend(device: str | torch.device = "cpu") -> str:
    """Implementation that impl="auto" uses on `device`: "fused-cpu", "fused-cuda" or "reference".

    The first call builds the extension (once per torch version, cached under the mule cache); if the
    build fails it warns once and reports "reference".
    """
    kind = torch.device(device).type
    if kind not in _FUSED_DTYPES:
        return "reference"
    ext = build.extension_or_none()
    if ext is None or (kind == "cuda" and not ext.has_cuda()):
        return "reference"
    return f"fused-{kind}"


def _fused_supports(student: torch.Tensor, k: int) -> bool:
    kind = student.device.type
    return student.dtype in _FUSED_DTYPES.get(kind, ()) and not (kind == "cuda" and k > CUDA_MAX_K)


def topk_union_smooth_l1_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    k: int = 20,
    beta: float = 1.0,
    valid: torch.Tensor | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Mean over valid positions of (1/|U|) Σ_{j∈U} huber_β(s_j − t_j), U = topK(teacher) ∪ topK(student).

    student, teacher: [N, V] or [B, T, V] logits (float32, bfloat16, float16; float64 too), same shape and
    dtype. Ties in the top-K are broken by the lower vocabulary index. valid: optional bool mask over
    positions ([N] or [B, T]); masked positions are never read. Gradient flows to `student` only.

    Returns a float32 scalar (float64 for float64 logits); arithmetic is float32 in every input dtype.
    Edge cases: every position masked -> 0.0 with a zero gradient; k > V, k < 1 or beta <= 0 ->
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
    if torch.compiler.is_compiling():
        # Under torch.compile, decide from the already-loaded extension (no build, no lock in the graph);
        # call the loss once eagerly (or backend()) first to build it.
        ext = build._state.get("ext")
        use_fused = ext is not None and _fused_supports(student, k) and (student.device.type == "cpu" or ext.has_cuda())
        if not use_fused:
            if impl == "fused":
                raise RuntimeError("impl='fused' under torch.compile needs the extension built first: call backend()")
            return reference_loss(student, teacher, k, beta, valid)
    elif impl == "auto":
        if not _fused_supports(student, k) or not backend(student.device).startswith("fused"):
            return reference_loss(student, teacher, k, beta, valid)
    else:
        if not _fused_supports(student, k):
            raise ValueError(f"the fused kernel does not support {student.dtype} on {student.device} with k={k}")
        build.load_extension()  # raises ExtensionUnavailable with the build log
    from .op import topk_union_smooth_l1

    s3 = student if student.dim() == 3 else student.unsqueeze(0)
    t3 = teacher.detach() if teacher.dim() == 3 else teacher.detach().unsqueeze(0)
    if teacher.dtype != student.dtype:
        t3 = t3.to(student.dtype)
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
