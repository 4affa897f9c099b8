"""Teacher logits shifted onto the student's level, per position (`distill --center-logits`).

Why: softmax ignores a constant added to a position's logits, but a Smooth-L1 on raw logits does not.
An intention prompt moves the teacher's whole logit level (on the default model the forget teacher sits
about 9 units below the student, 27 with `--amplify 2`), so in the linear part of the Huber loss every
selected logit gets the same push down: a gradient that mostly lowers the student's level everywhere,
not one that teaches which tokens to prefer. Shifting the teacher by the mean gap over the selected set
U keeps only the relative preferences. The shift is computed without gradient, so the loss and its
gradient stay the plain top-K Smooth-L1 (the fused kernel runs unchanged on the shifted teacher).
"""

from __future__ import annotations

import torch

from .topk import selected_set


@torch.no_grad()
def centered_teacher(s: torch.Tensor, t: torch.Tensor, k: int, union: bool = True) -> torch.Tensor:
    """t + mean_{j∈U}(s_j − t_j) per position, in t's dtype (the mean accumulated in fp32).

    U is the set the loss will use (shifting t by a constant per row leaves its top-k, hence U, as it
    was). A position whose gap over U is not finite (an infinite or NaN logit) is left unshifted, so the
    loss sees exactly what it would have seen without centering there."""
    s32, t32 = s.detach().to(torch.float32), t.detach().to(torch.float32)
    u = selected_set(s32, t32, k, union)
    gap = torch.where(u, s32 - t32, torch.zeros((), dtype=torch.float32, device=s.device))
    shift = gap.sum(-1, keepdim=True) / u.sum(-1, keepdim=True).clamp_min(1)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    return (t32 + shift).to(t.dtype)
