"""The fused loss as a torch custom op `mule::topk_union_smooth_l1` (CPU and CUDA kernels from csrc/).

Liger-style: the forward computes the loss AND the gradient of every row in one pass, but keeps the
gradient sparse — at most 2K (index, value) pairs per row, already divided by |U| and by the number of
valid rows — so no [N, V] buffer lives between forward and backward. Backward scatters those pairs,
scaled by grad_output, into a dense gradient of the student's dtype (the only [N, V] allocation).

Op schema: (student [B,T,V], teacher [B,T,V], valid [B,T] bool, k, beta) -> (loss [], idx [N,W] int64,
val [N,W]) with W = min(2K, V); loss/val are float32 (float64 for float64 logits). The teacher has the
student's dtype, or is float32 under a float16/bfloat16 student (read without a copy; the public wrapper
up-casts any other mix). Rows with NaN/±inf yield NaN; the public wrapper turns that into a ValueError.
"""

from __future__ import annotations

import torch

from .build import load_extension


def row_terms(student, teacher, valid, k, beta):
    """The kernel's raw output, no autograd: (row_loss [N], idx [N, W], val [N, W]) where val is the
    gradient of each row's OWN loss. For callers that weight rows themselves (kernels/chunked.py)."""
    ext = load_extension()
    return (ext.forward_cuda if student.is_cuda else ext.forward_cpu)(student, teacher, valid, k, beta)


def _finish(student, valid, row_loss, idx, val):
    n_valid = valid.sum().clamp_min(1).to(row_loss.dtype)
    loss = row_loss.sum() / n_valid
    val.div_(n_valid)
    return loss, idx, val


@torch.library.custom_op("mule::topk_union_smooth_l1", mutates_args=())
def topk_union_smooth_l1(
    student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor, k: int, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    raise NotImplementedError(f"mule::topk_union_smooth_l1 has no kernel for device {student.device}")


@topk_union_smooth_l1.register_kernel("cpu")
def _cpu(student, teacher, valid, k, beta):
    row_loss, idx, val = load_extension().forward_cpu(student, teacher, valid, k, beta)
    return _finish(student, valid, row_loss, idx, val)


@topk_union_smooth_l1.register_kernel("cuda")
def _cuda(student, teacher, valid, k, beta):
    row_loss, idx, val = load_extension().forward_cuda(student, teacher, valid, k, beta)
    return _finish(student, valid, row_loss, idx, val)


@topk_union_smooth_l1.register_fake
def _fake(student, teacher, valid, k, beta):
    n = student.shape[0] * student.shape[1]
    width = min(2 * k, student.shape[2])
    acc = torch.float64 if student.dtype == torch.float64 else torch.float32
    loss = student.new_empty((), dtype=acc)
    idx = student.new_empty((n, width), dtype=torch.int64)
    val = student.new_empty((n, width), dtype=acc)
    return loss, idx, val


def _setup_context(ctx, inputs, output):
    student = inputs[0]
    _, idx, val = output
    ctx.save_for_backward(idx, val)
    ctx.shape = student.shape
    ctx.dtype = student.dtype


def _backward(ctx, grad_loss, grad_idx, grad_val):
    idx, val = ctx.saved_tensors
    batch, steps, vocab = ctx.shape
    grad = torch.zeros((batch * steps, vocab), dtype=ctx.dtype, device=idx.device)
    grad.scatter_(1, idx, (val * grad_loss).to(ctx.dtype))
    return grad.view(batch, steps, vocab), None, None, None, None


topk_union_smooth_l1.register_autograd(_backward, setup_context=_setup_context)
