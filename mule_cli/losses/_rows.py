"""Shared row handling for the logit-distillation losses: flatten, drop invalid rows, fp32."""

from __future__ import annotations

import torch

from ._acc import to_acc


def valid_rows(student: torch.Tensor, teacher: torch.Tensor,
               valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (student, teacher) as float32 (float64 stays) ``[M, V]`` holding only the valid positions.

    Inputs may be ``[N, V]`` or ``[..., V]`` with ``valid`` shaped like the leading dims
    (bool or 0/1). Rows are selected *before* the float32 cast so ignored positions cost
    no memory. The teacher is detached: it is a frozen target and never gets a gradient.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} logits differ in shape")
    v = student.shape[-1]
    s = student.reshape(-1, v)
    t = teacher.detach().reshape(-1, v)
    if valid is not None:
        keep = valid.reshape(-1).to(torch.bool)
        if keep.numel() != s.shape[0]:
            raise ValueError(f"valid has {keep.numel()} entries for {s.shape[0]} logit rows")
        s, t = s[keep], t[keep]
    return to_acc(s), to_acc(t)


def empty_loss(student: torch.Tensor) -> torch.Tensor:
    """0.0 that stays on ``student``'s graph, for a batch with no valid row."""
    return to_acc(student).sum() * 0.0


def checked_rows(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor | None,
                 checks: list[tuple[bool, str]]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The distillation losses' common start: raise ValueError on the first failed (ok, message) argument
    check, then return `valid_rows`, or None when no row is valid (the caller returns `empty_loss`)."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    s, t = valid_rows(student, teacher, valid)
    return (s, t) if s.shape[0] else None
