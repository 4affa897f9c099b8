"""Pure-PyTorch reference of the top-K-union Smooth-L1 loss (SPEC §4): the ground truth for the fused op.

Written the way a PyTorch user would (topk, scatter mask, smooth_l1) so it is easy to audit; the only
extra care is the tie-break. `torch.topk` does not promise which of several equal values it returns, so
rows whose K-th value is tied are re-selected by "lowest vocabulary index first" (`losses.topk`, shared
with the DUET and BiLD losses). Rows without a tie at the boundary (almost all rows of real float32
logits) keep the plain topk + scatter path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..losses.topk import selected_set  # the one tie-break rule (lower index first) for every loss

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def check_args(student: torch.Tensor, teacher: torch.Tensor, k: int, beta: float, valid) -> None:
    """Shared argument validation: both implementations raise the same ValueError for the same input."""
    if student.shape != teacher.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student.shape)} vs {tuple(teacher.shape)}")
    if student.dim() not in (2, 3):
        raise ValueError(f"logits must be [N, V] or [B, T, V], got shape {tuple(student.shape)}")
    if student.dtype not in SUPPORTED_DTYPES or teacher.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"unsupported logits dtype {student.dtype}/{teacher.dtype}; use float32, bfloat16 or float16")
    if student.device != teacher.device:
        raise ValueError(f"student on {student.device} but teacher on {teacher.device}")
    vocab = student.shape[-1]
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > vocab:
        raise ValueError(f"k={k} exceeds the vocabulary size V={vocab}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    if valid is not None:
        if valid.dtype != torch.bool:
            raise ValueError(f"valid must be a bool mask, got dtype {valid.dtype}")
        if tuple(valid.shape) != tuple(student.shape[:-1]):
            raise ValueError(f"valid mask shape {tuple(valid.shape)} does not match positions {tuple(student.shape[:-1])}")


class NonFiniteLogits(ValueError):
    """NaN or ±inf at a valid position: the loss is undefined there (training skips the step)."""


def nonfinite_error(row: int) -> NonFiniteLogits:
    return NonFiniteLogits(
        f"non-finite value (NaN or ±inf) in the student or teacher logits at position {row} "
        "(row of the flattened [N, V] logits); the top-K loss is undefined there — mask the position out "
        "with `valid` or fix the logits"
    )


def first_nonfinite_row(s: torch.Tensor, t: torch.Tensor) -> int | None:
    """Index of the first row holding NaN/±inf in s or t, else None.

    A row sum is non-finite whenever the row is (and, rarely, when huge finite values overflow), so
    only the rows it flags are checked element-wise: a fast, exact test.
    """
    suspect = ~(torch.isfinite(s.sum(-1)) & torch.isfinite(t.sum(-1)))
    for row in suspect.nonzero().squeeze(-1).tolist():
        if not (bool(torch.isfinite(s[row]).all()) and bool(torch.isfinite(t[row]).all())):
            return row
    return None


def reference_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    k: int = 20,
    beta: float = 1.0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over valid positions of (1/|U|) Σ_{j∈U} huber_β(s_j − t_j), U = topK(t) ∪ topK(s).

    Returns a float32 scalar (float64 if either input is float64); no gradient flows to the teacher. All
    positions masked out -> 0.0 (with a zero gradient). A NaN/±inf in a valid position raises ValueError.
    Mixed dtypes follow the fused op's rule (`kernels.kernel_inputs`): each input is read at its own
    precision and both are up-cast to the accumulation dtype; neither is rounded to the other's dtype.
    """
    check_args(student, teacher, k, beta, valid)
    vocab = student.shape[-1]
    acc = torch.promote_types(torch.promote_types(student.dtype, teacher.dtype), torch.float32)
    s = student.reshape(-1, vocab)
    t = teacher.detach().reshape(-1, vocab)
    if valid is not None:
        keep = valid.reshape(-1).to(s.device)
        rows = keep.nonzero().squeeze(-1)
        s, t = s[keep], t[keep]
    else:
        rows = None
    if s.shape[0] == 0:
        return s.reshape(-1)[:0].to(acc).sum()  # 0.0, still connected to the graph (zero gradient)
    bad = first_nonfinite_row(s.detach(), t)
    if bad is not None:
        raise nonfinite_error(int(rows[bad]) if rows is not None else bad)
    with torch.no_grad():
        union = selected_set(s.detach(), t, k)
    per = F.smooth_l1_loss(s.to(acc), t.to(acc), beta=beta, reduction="none")
    row = (per * union).sum(-1) / union.sum(-1)
    return row.mean()
