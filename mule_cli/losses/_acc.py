"""Accumulation dtype: float32 for half-precision inputs, float64 kept (gradcheck), never lower."""

from __future__ import annotations

import torch


def to_acc(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least float32 (bf16/fp16/int → float32; float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32)) if x.is_floating_point() else x.to(torch.float32)
