"""The loss from hidden states and lm_head weights without materialising [N, V] logits.

Liger-style "fused linear" variant: rows are processed in chunks; each chunk's logits exist only while
the fused kernel selects its top-K union, and the gradient is pushed straight through the lm_head
from the SPARSE (index, value) pairs — grad_hidden[r] = Σ_u val[r,u]·W[idx[r,u]] and
grad_W[idx[r,u]] += val[r,u]·h[r] — so neither full logits nor a dense logits gradient ever exist.
Peak extra memory is O(chunk·V) instead of O(N·V); the dense grad_W (the parameter's gradient)
exists only from backward on, once per call, and for a head tied to the input embedding not at all
(sparse_weight_grad: the touched rows go into the embedding's gradient). One call returns every row's
loss, so a training step weights its objectives' rows with one call and one grad_W. Requires the fused
extension.
"""

from __future__ import annotations

import math

import torch

from .op import row_terms
from .reference import nonfinite_error


LOGITS_PER_CHUNK = 1 << 24  # most elements of one chunk's [rows, V] logits (64 MB in fp32): rows <= this // V


def default_chunk_rows(vocab: int, hidden: int) -> int:
    """Rows whose logits exist at once: at most 2^24 logits, and the chunk's student + teacher logits
    (2·rows·V) no larger than the lm_head (V·H), whose gradient and optimizer state the step holds anyway, so
    the loss never adds more than one head's size (rows <= H/2; a narrow model's chunks are smaller)."""
    return max(1, min(LOGITS_PER_CHUNK // vocab, hidden // 2))


class _RowsFromHidden(torch.autograd.Function):
    """[N] per-row losses (0 at invalid rows) from hidden states; gradients to hs and ws. Only valid rows
    are computed (padding is most of a ragged batch's rows)."""

    @staticmethod
    def forward(ctx, hs, ws, ht, wt, valid, k, beta, chunk_size, sparse_grad):
        rows = valid.nonzero().squeeze(1)
        n_chunks = max(1, math.ceil(rows.numel() / chunk_size))
        chunk_size = max(1, math.ceil(rows.numel() / n_chunks))  # equal chunks: the peak follows the largest
        losses = torch.zeros(hs.shape[0], dtype=torch.float32, device=hs.device)
        grad_h = torch.zeros(hs.shape, dtype=torch.float32, device=hs.device)
        indices, values = [], []
        for start in range(0, rows.numel(), chunk_size):
            chunk = rows[start:start + chunk_size]
            row_loss, idx, val = row_terms((hs[chunk] @ ws.t())[None], (ht[chunk] @ wt.t())[None],
                                           torch.ones((1, chunk.numel()), dtype=torch.bool, device=hs.device), k, beta)
            bad = ~torch.isfinite(row_loss)
            if bool(bad.any()):
                raise nonfinite_error(int(chunk[bad.nonzero()[0, 0]]))
            padding = torch.zeros_like(idx, dtype=torch.bool)
            padding[:, 1:] = idx[:, 1:] == idx[:, :1]  # padded slots repeat slot 0; union members are distinct
            val = val.float().masked_fill(padding, 0.0)
            with torch.autocast(hs.device.type, enabled=False):  # fp32 accumulation under a bf16 autocast too
                grad_h[chunk] = torch.einsum("ru,ruh->rh", val, ws[idx].float())
            losses[chunk] = row_loss.float()
            indices.append(idx)
            values.append(val)
        if indices:
            idx, val = torch.cat(indices), torch.cat(values)
        else:  # no valid row: nothing reaches the lm_head
            idx = torch.zeros((0, min(2 * k, ws.shape[0])), dtype=torch.int64, device=hs.device)
            val = idx.float()
        ctx.save_for_backward(grad_h, hs, rows, idx, val)
        ctx.dtypes = (hs.dtype, ws.dtype)
        ctx.vocab, ctx.sparse_grad = ws.shape[0], sparse_grad
        return losses

    @staticmethod
    def backward(ctx, grad_rows):
        grad_h, hs, rows, idx, val = ctx.saved_tensors
        scale = grad_rows.float()[:, None]
        grad_w = None
        if ctx.needs_input_grad[1]:  # a frozen head (LoRA) needs none
            grad_w = _weight_grad(idx, (val * scale[rows]).reshape(-1), hs[rows].float(), ctx.vocab, ctx.sparse_grad)
            grad_w = grad_w.to(ctx.dtypes[1])
        return (grad_h * scale).to(ctx.dtypes[0]), grad_w, None, None, None, None, None, None, None


def _weight_grad(idx, values, hidden, vocab: int, sparse: bool) -> torch.Tensor:
    """grad_W[v] = Σ over (valid row r, slot u) with idx[r, u] == v of val[r, u]·h[r]: one sparse × dense
    product, accumulated in fp32. Dense [V, H], or (sparse) a COO tensor holding only the touched rows."""
    slot_row = torch.arange(idx.shape[0], device=idx.device).repeat_interleave(idx.shape[1])
    token = idx.reshape(-1)
    if sparse:
        touched, token = token.unique(return_inverse=True)
    pairs = torch.sparse_coo_tensor(torch.stack([token, slot_row]), values,
                                    (touched.numel() if sparse else vocab, idx.shape[0]), check_invariants=False)
    block = torch.sparse.mm(pairs, hidden)
    if not sparse:
        return block
    return torch.sparse_coo_tensor(touched[None], block, (vocab, hidden.shape[1]), is_coalesced=True,
                                   check_invariants=False)


def topk_union_smooth_l1_rows_from_hidden(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    k: int = 20,
    beta: float = 1.0,
    valid: torch.Tensor | None = None,
    chunk_size: int | None = None,
    sparse_weight_grad: bool = False,
) -> torch.Tensor:
    """Per-position losses (shape of the hidden states without H; 0 where not valid), equal to the rows of
    topk_union_smooth_l1_loss(h_s @ W_s.T, h_t @ W_t.T, ...), with gradients to the student's hidden
    states and lm_head weight [V, H]; the teacher gets none.

    sparse_weight_grad: the weight's gradient as a sparse COO tensor of the rows the top-K unions touched.
    Only for a head tied to the input embedding: autograd then adds it in place into the embedding's dense
    gradient, so the step holds one [V, H] gradient, not two; an untied head's .grad would stay sparse."""
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
    chunk_size = chunk_size or default_chunk_rows(vocab, hidden)
    rows = _RowsFromHidden.apply(hs, student_weight, ht, teacher_weight.detach(), mask, int(k), float(beta),
                                 int(chunk_size), bool(sparse_weight_grad))
    return rows.view(student_hidden.shape[:-1])


def topk_union_smooth_l1_from_hidden(student_hidden, student_weight, teacher_hidden, teacher_weight, k=20, beta=1.0,
                                     valid=None, chunk_size=None, sparse_weight_grad=False) -> torch.Tensor:
    """Same value as topk_union_smooth_l1_loss(h_s @ W_s.T, h_t @ W_t.T, ...): the mean over valid rows."""
    rows = topk_union_smooth_l1_rows_from_hidden(student_hidden, student_weight, teacher_hidden, teacher_weight, k,
                                                 beta, valid, chunk_size, sparse_weight_grad)
    n_valid = rows.numel() if valid is None else int(valid.sum())
    return rows.sum() / max(1, n_valid)
