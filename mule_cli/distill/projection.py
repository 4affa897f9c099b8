"""`--protect OBJECTIVES`: gradient surgery (PCGrad, Yu et al. 2020) between the forget side and what
must be kept.

Why: the retain term starts at zero (student = base = its teacher) and stays small next to the amplified
forget-side terms, so a step that helps forgetting and hurts retain is taken almost whole; on the default
model even the retain questions trained on lose their answers. With `--protect retain` each step's gradient
of the other objectives loses its component along the protected objectives' gradient whenever the two point
against each other (negative dot product); the protected gradient itself is added back whole. So, to first
order, no step makes the protected loss worse. One extra backward pass per micro-batch.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import MuleError
from ..objective_options import objective_subset
from ..records import OBJECTIVES


def parse_protect(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """`retain,neighbor` -> ('neighbor', 'retain') in OBJECTIVES order; '' / 'none' / None -> ()."""
    items = objective_subset(value, "--protect")
    if set(items) == set(OBJECTIVES):
        raise MuleError("--protect: protecting every objective leaves nothing to project")
    return items


def project_conflict(other: list[torch.Tensor], protected: list[torch.Tensor]) -> tuple[list[torch.Tensor], float]:
    """(other − min(0, ⟨other, protected⟩)/‖protected‖² · protected + protected, cosine before projection).
    Dot products in fp64 over all tensors together (one direction for the whole model)."""
    dot = p2 = o2 = 0.0
    for o, p in zip(other, protected):  # one fp64 copy of each tensor pair, not one per sum
        od, pd = o.double(), p.double()
        dot += float((od * pd).sum())
        p2 += float((pd * pd).sum())
        o2 += float((od * od).sum())
    cos = dot / (o2 * p2) ** 0.5 if o2 > 0 and p2 > 0 else 0.0
    scale = dot / p2 if dot < 0 and p2 > 0 else 0.0
    return [o - scale * p + p for o, p in zip(other, protected)], cos


class ConflictProjector:
    """Collects the protected objectives' gradient (autograd.grad, so it never lands in .grad) while the
    other objectives backpropagate into .grad as usual; `apply()` then writes the projected sum into .grad."""

    def __init__(self, params: Sequence[torch.nn.Parameter]):
        self.params = list(params)
        self.protected: list[torch.Tensor] | None = None

    def add(self, loss: torch.Tensor) -> None:
        grads = torch.autograd.grad(loss, self.params, retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(self.params, grads)]
        self.protected = grads if self.protected is None else [a + b for a, b in zip(self.protected, grads)]

    def apply(self) -> float | None:
        """Projects and returns the cosine between the two gradients (None when nothing was protected)."""
        if self.protected is None:
            return None
        other = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
        combined, cos = project_conflict(other, self.protected)
        for p, g in zip(self.params, combined):
            p.grad = g
        self.discard()
        return cos

    def discard(self) -> None:
        """Drops what was collected (a skipped step: its gradients are zeroed, not applied)."""
        self.protected = None
