"""Uni-directional (teacher-top-K only) Smooth-L1 logit distillation — the ``duet`` ablation.

SPEC §4's loss over T only (DUET, Zhong et al., 2026, distils toward the teacher's top
logits and has no student-led side). For one position with raw student logits s and
teacher logits t:

    T = indices of the K largest entries of t (ties → lower vocabulary index)
    ℓ = (1/K) · Σ_{j∈T} huber_β(s_j − t_j),
    huber_β(d) = 0.5·d²/β if |d| < β else |d| − 0.5·β

and the loss is the mean of ℓ over valid positions. ∂ℓ/∂s_j = clamp((s_j − t_j)/β, −1, 1)/K
on T, 0 elsewhere; the teacher gets no gradient. Plain PyTorch, float32 accumulation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._rows import empty_loss, valid_rows
from .defaults import DUET_HUBER_BETA, DUET_TOP_K
from .topk import stable_topk_indices


def teacher_topk_smooth_l1(student: torch.Tensor, teacher: torch.Tensor,
                           valid: torch.Tensor | None = None, k: int = DUET_TOP_K,
                           beta: float = DUET_HUBER_BETA) -> torch.Tensor:
    """Smooth-L1 between student and teacher logits on the teacher's top-K, mean over valid rows.

    ``student``/``teacher``: ``[N, V]`` (or ``[..., V]``) raw logits, any float dtype;
    ``valid``: bool ``[N]`` (or the leading shape), None = all rows. K is capped at V.
    Returns a float32 scalar.
    """
    if k < 1:
        raise ValueError(f"duet k must be >= 1, got {k}")
    if beta <= 0:
        raise ValueError(f"duet beta must be > 0, got {beta}")
    s, t = valid_rows(student, teacher, valid)
    if s.shape[0] == 0:
        return empty_loss(student)
    idx = stable_topk_indices(t, k)
    per_tok = F.smooth_l1_loss(s.gather(-1, idx), t.gather(-1, idx), beta=beta, reduction="none")
    return per_tok.mean(-1).mean()
