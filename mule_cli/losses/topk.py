"""Deterministic top-k: largest values first, ties broken by the lower vocabulary index.

``torch.topk`` leaves the order of equal values unspecified (and it differs between CPU
and CUDA). SPEC §4 fixes ties to the lower index, and BiLD's pairwise differences depend
on the *order* of the selected indices, so both losses select through this helper.
"""

from __future__ import annotations

import torch


def stable_topk_indices(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[..., k]`` of the k largest entries of ``x`` along the last dim, ordered by
    value descending then index ascending. No gradient flows (indices only)."""
    x = x.detach()
    k = min(k, x.shape[-1])
    extra = 1 if k < x.shape[-1] else 0
    vals, idx = x.topk(k + extra, dim=-1)  # one more: is the k-th value tied with the next one?
    idx = idx[..., :k]
    if extra:
        # Rows where ties straddle the k-th value: topk may have kept a higher index than a tied
        # lower one. Those rows are rare; redo them with a stable full sort.
        straddle = vals[..., k] == vals[..., k - 1]
        if bool(straddle.any()):
            _, full = torch.sort(x[straddle], dim=-1, descending=True, stable=True)
            idx = idx.clone()
            idx[straddle] = full[..., :k]
    # Fix the order inside the selection: sort by index, then stably by value (descending).
    idx, _ = idx.sort(dim=-1)
    _, order = x.gather(-1, idx).sort(dim=-1, descending=True, stable=True)
    return idx.gather(-1, order)


def topk_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (shape of ``x``) of the k largest entries along the last dim, ties to the lower index."""
    return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, stable_topk_indices(x, k), True)


def selected_set(s: torch.Tensor, t: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the set U the top-K loss compares: teacher top-k ∪ student top-k (SPEC §4; ties to the
    lower index). No gradient flows (a mask)."""
    return topk_mask(t, k) | topk_mask(s, k)
