"""Stretch: the loss from hidden states and lm_head weights without materialising [N, V] logits.

Liger-style "fused linear" variant: rows are processed in chunks; each chunk's logits exist only while
the fused op selects its top-K union, and the chunk's gradient is pushed straight through the lm_head
from the SPARSE (index, value) pairs — grad_hidden[r] = Σ_u val[r,u]·W[idx[r,u]] and
grad_W[idx[r,u]] += val[r,u]·h[r] — so neither full logits nor a dense logits gradient ever exist.
Peak extra memory is O(chunk·V) instead of O(N·V). Requires the fused extension (any device it supports).
"""

from __future__ import annotations

import torch

from .op import topk_union_smooth_l1
from .reference import nonfinite_error


class _FromHidden(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hs, ws, ht, wt, valid, k, beta, chunk_size):
        n = hs.shape[0]
        denom = valid.sum().clamp_min(1).float()
        grad_h = torch.zeros(hs.shape, dtype=torch.float32, device=hs.device)
        grad_w = torch.zeros(ws.shape, dtype=torch.float32, device=ws.device)
        total = torch.zeros((), dtype=torch.float32, device=hs.device)
        for start in range(0, n, chunk_size):
            rows = slice(start, min(n, start + chunk_size))
            mask = valid[rows]
            h = hs[rows]
            s_logits = h @ ws.t()
            t_logits = ht[rows] @ wt.t()
            loss, idx, val = topk_union_smooth_l1(s_logits[None], t_logits[None], mask[None], k, beta)
            del s_logits, t_logits
            n_chunk = mask.sum().clamp_min(1).float()
            if not bool(torch.isfinite(loss)):
                raise nonfinite_error(start + int(torch.isnan(val).any(-1).nonzero()[0, 0]))
            total += loss.float() * n_chunk
            val = val.float() * (n_chunk / denom)  # chunk mean -> global mean over valid rows
            padding = torch.zeros_like(idx, dtype=torch.bool)
            padding[:, 1:] = idx[:, 1:] == idx[:, :1]  # padded slots repeat slot 0; union members are distinct
            val = val.masked_fill(padding, 0.0)
            grad_h[rows] = torch.einsum("ru,ruh->rh", val, ws[idx].float())
            grad_w.index_add_(0, idx.reshape(-1), (val[..., None] * h[:, None, :].float()).reshape(-1, h.shape[1]))
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (hs.dtype, ws.dtype)
        return total / denom

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        return ((grad_h * grad_out).to(ctx.dtypes[0]), (grad_w * grad_out).to(ctx.dtypes[1]),
                None, None, None, None, None, None)


def topk_union_smooth_l1_from_hidden(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    k: int = 20,
    beta: float = 1.0,
    valid: torch.Tensor | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Same value as topk_union_smooth_l1_loss(h_s @ W_s.T, h_t @ W_t.T, ...) with gradients to the
    student's hidden states [N, H] (or [B, T, H]) and lm_head weight [V, H]; teacher gets none."""
    from . import build

    build.load_extension()
    hidden = student_hidden.shape[-1]
    hs = student_hidden.reshape(-1, hidden)
    ht = teacher_hidden.detach().reshape(-1, teacher_hidden.shape[-1])
    if ht.shape[0] != hs.shape[0]:
        raise ValueError(f"student has {hs.shape[0]} positions but teacher has {ht.shape[0]}")
    vocab = student_weight.shape[0]
    if teacher_weight.shape[0] != vocab:
        raise ValueError(f"student vocabulary {vocab} != teacher vocabulary {teacher_weight.shape[0]}")
    if not 1 <= k <= vocab:
        raise ValueError(f"k={k} must be in [1, V={vocab}]")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    mask = torch.ones(hs.shape[0], dtype=torch.bool, device=hs.device) if valid is None else valid.reshape(-1).to(hs.device)
    return _FromHidden.apply(hs, student_weight, ht, teacher_weight.detach(), mask, int(k), float(beta), int(chunk_size))
