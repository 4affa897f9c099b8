"""The loss from hidden states and lm_head weights without materialising [N, V] logits.

Liger-style "fused linear" variant: rows are processed in chunks; each chunk's logits exist only while
the fused kernel selects its top-K union, and the gradient is pushed straight through the lm_head
from the SPARSE (index, value) pairs — grad_hidden[r] = Σ_u val[r,u]·W[idx[r,u]] and
grad_W[idx[r,u]] += val[r,u]·h[r] — so neither full logits nor a dense logits gradient ever exist.
Peak extra memory is O(chunk·V) instead of O(N·V); the dense grad_W (the parameter's gradient)
exists only from backward on, once per call. One call returns every row's loss, so a training step
weights its objectives' rows with one call and one grad_W. Requires the fused extension.
"""

from __future__ import annotations

import torch

from .op import row_terms
from .reference import nonfinite_error


class _RowsFromHidden(torch.autograd.Function):
    """[N] per-row losses (0 at invalid rows) from hidden states; gradients to hs and ws."""

    @staticmethod
    def forward(ctx, hs, ws, ht, wt, valid, k, beta, chunk_size):
        n = hs.shape[0]
        grad_h = torch.zeros(hs.shape, dtype=torch.float32, device=hs.device)
        losses, indices, values = [], [], []
        for start in range(0, n, chunk_size):
            rows = slice(start, min(n, start + chunk_size))
            row_loss, idx, val = row_terms((hs[rows] @ ws.t())[None], (ht[rows] @ wt.t())[None], valid[rows][None],
                                           k, beta)
            bad = ~torch.isfinite(row_loss)
            if bool(bad.any()):
                raise nonfinite_error(start + int(bad.nonzero()[0, 0]))
            val = val.float()
            padding = torch.zeros_like(idx, dtype=torch.bool)
            padding[:, 1:] = idx[:, 1:] == idx[:, :1]  # padded slots repeat slot 0; union members are distinct
            val = val.masked_fill(padding, 0.0)
            grad_h[rows] = torch.einsum("ru,ruh->rh", val, ws[idx].float())
            losses.append(row_loss.float())
            indices.append(idx)
            values.append(val)
        ctx.save_for_backward(grad_h, hs, torch.cat(indices), torch.cat(values))
        ctx.dtypes = (hs.dtype, ws.dtype)
        ctx.vocab = ws.shape[0]
        return torch.cat(losses)

    @staticmethod
    def backward(ctx, grad_rows):
        grad_h, hs, idx, val = ctx.saved_tensors
        scale = grad_rows.float()[:, None]
        rows = torch.arange(idx.shape[0], device=idx.device).repeat_interleave(idx.shape[1])
        # grad_W[v] = Σ over (row r, slot u) with idx[r, u] == v of val[r, u]·h[r]: one sparse [V, N] × dense
        # [N, H] product, accumulated in fp32
        pairs = torch.sparse_coo_tensor(torch.stack([idx.reshape(-1), rows]), (val * scale).reshape(-1),
                                        (ctx.vocab, idx.shape[0]), check_invariants=False)
        grad_w = torch.sparse.mm(pairs, hs.float())
        return (grad_h * scale).to(ctx.dtypes[0]), grad_w.to(ctx.dtypes[1]), None, None, None, None, None, None


def topk_union_smooth_l1_rows_from_hidden(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    k: int = 20,
    beta: float = 1.0,
    valid: torch.Tensor | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Per-position losses (shape of the hidden states without H; 0 where not valid), equal to the rows of
    topk_union_smooth_l1_loss(h_s @ W_s.T, h_t @ W_t.T, ...), with gradients to the student's hidden
    states and lm_head weight [V, H]; the teacher gets none."""
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
    rows = _RowsFromHidden.apply(hs, student_weight, ht, teacher_weight.detach(), mask, int(k), float(beta),
                                 int(chunk_size))
    return rows.view(student_hidden.shape[:-1])


def topk_union_smooth_l1_from_hidden(student_hidden, student_weight, teacher_hidden, teacher_weight, k=20, beta=1.0,
                                     valid=None, chunk_size=1024) -> torch.Tensor:
    """Same value as topk_union_smooth_l1_loss(h_s @ W_s.T, h_t @ W_t.T, ...): the mean over valid rows."""
    rows = topk_union_smooth_l1_rows_from_hidden(student_hidden, student_weight, teacher_hidden, teacher_weight, k,
                                                 beta, valid, chunk_size)
    n_valid = rows.numel() if valid is None else int(valid.sum())
    return rows.sum() / max(1, n_valid)
