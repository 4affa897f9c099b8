"""BiLD — Bi-directional Logits Difference loss (Li, Zhou & Song, COLING 2025; arXiv 2406.13555).

Used as the ``bild`` ablation of the distillation loss (SPEC §4). Definition, following
the paper and its reference code (fpcsong/BiLD):

For one position with student logits s and teacher logits t (raw, V entries):

* teacher-led half (t-LD): I = top-k indices of t, ordered by teacher value (descending).
  For every pair a < b in that order form the differences
  dₜ = (t_{I_a} − t_{I_b})/τ and dₛ = (s_{I_a} − s_{I_b})/τ   (k(k−1)/2 pairs),
  p = softmax(dₜ), q = softmax(dₛ), and L_t-LD = KL(p ‖ q) = Σ p (log p − log q).
* student-led half (s-LD): the same with I = top-k indices of s ordered by the student's
  values; the distribution built from the teacher's differences is still the target.
* L_BiLD = L_t-LD + L_s-LD, averaged over the valid positions. No τ² factor (the
  reference code has none).

Because only differences of logits enter, the loss is invariant to adding a constant to
either model's logits, and it is 0 whenever s − t is constant on the selected indices: it
aligns *rankings/gaps*, not magnitudes — the property the mule paper's ablation blames for
BiLD's weaker forgetting. Ties in the top-k are broken by the lower vocabulary index
(the pair order, hence the loss, depends on it). Accumulation is float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._rows import checked_rows, empty_loss
from .defaults import BILD_TEMPERATURE, BILD_TOP_K
from .topk import stable_topk_indices


def _pair_kl(lead: torch.Tensor, s: torch.Tensor, t: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) of the softmaxed pairwise differences over ``lead``'s top-k, per row."""
    idx = stable_topk_indices(lead, k)
    a, b = torch.triu_indices(idx.shape[-1], idx.shape[-1], offset=1, device=idx.device)
    ts = t.gather(-1, idx) / temperature
    ss = s.gather(-1, idx) / temperature
    log_p = F.log_softmax(ts[:, a] - ts[:, b], dim=-1)
    log_q = F.log_softmax(ss[:, a] - ss[:, b], dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def bild_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
              valid: torch.Tensor | None = None, top_k: int = BILD_TOP_K,
              temperature: float = BILD_TEMPERATURE) -> torch.Tensor:
    """BiLD loss (teacher-led + student-led logit-difference KL), mean over valid rows.

    ``student_logits``/``teacher_logits``: ``[N, V]`` (or ``[..., V]``), any float dtype;
    ``valid``: bool ``[N]`` (or the leading shape), None = all rows. Returns a float32
    scalar; gradient flows to the student only (also through the values it selects in the
    student-led half, as in the reference code; the indices themselves are constants).
    """
    rows = checked_rows(student_logits, teacher_logits, valid,
                        [(top_k >= 2, f"bild top_k must be >= 2 (it needs pairs), got {top_k}"),
                         (temperature > 0, f"bild temperature must be > 0, got {temperature}")])
    if rows is None:
        return empty_loss(student_logits)
    s, t = rows
    per_row = _pair_kl(t, s, t, top_k, temperature) + _pair_kl(s, s, t, top_k, temperature)
    return per_row.mean()
