"""Top-K Smooth-L1 logit distillation, the loss of `ours` (union=True) and of the DUET ablation (union=False).

SPEC §4, for one position with raw student logits s and teacher logits t:

    U = topK(t) ∪ topK(s)   (union=True: ours, bidirectional)
    U = topK(t)             (union=False: DUET, Zhong et al., 2026, teacher-led only)
    ℓ = (1/|U|) · Σ_{j∈U} huber_β(s_j − t_j),  huber_β(d) = 0.5·d²/β if |d| < β else |d| − 0.5·β

ties in the top-K go to the lower vocabulary index; the loss is the mean of ℓ over valid positions and
∂ℓ/∂s_j = clamp((s_j − t_j)/β, −1, 1)/|U| on U. The teacher gets no gradient. The union path runs the
fused C++/CUDA op (`mule_cli.kernels`, with its pure-PyTorch reference); the teacher-only path is plain
PyTorch (no kernel mode for it: it is an ablation). Float32 accumulation either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._rows import checked_rows, empty_loss
from .defaults import DISTILL_HUBER_BETA, DISTILL_TOP_K
from .topk import stable_topk_indices


def topk_smooth_l1(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor | None = None,
                   k: int = DISTILL_TOP_K, beta: float = DISTILL_HUBER_BETA, *, union: bool = True,
                   impl: str = "auto") -> torch.Tensor:
    """Smooth-L1 between student and teacher logits on the top-K set, mean over valid rows.

    ``student``/``teacher``: ``[N, V]`` (or ``[..., V]``) raw logits, any float dtype; ``valid``: bool
    over the leading shape, None = all rows. union=True: see `kernels.topk_union_smooth_l1_loss` (impl
    picks fused/reference; K > V is an error there). union=False: K is capped at V; ``impl`` is unused.
    Returns a float32 scalar (float64 for float64 inputs).
    """
    if union:
        from ..kernels import topk_union_smooth_l1_loss

        return topk_union_smooth_l1_loss(student, teacher, k=k, beta=beta, valid=valid, impl=impl)
    rows = checked_rows(student, teacher, valid, [(k >= 1, f"k must be >= 1, got {k}"),
                                                  (beta > 0, f"beta must be > 0, got {beta}")])
    if rows is None:
        return empty_loss(student)
    s, t = rows
    idx = stable_topk_indices(t, k)
    per_tok = F.smooth_l1_loss(s.gather(-1, idx), t.gather(-1, idx), beta=beta, reduction="none")
    return per_tok.mean(-1).mean()
