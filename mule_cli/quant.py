"""Round-to-nearest weight-only quantization grids, shared by the `quant4/quant8` evaluation attacks and
quantization-aware distillation, so that the attack and the training see exactly the same grid.

Why an attack: an unlearned model whose weights moved by less than half a quantization step from the
base snaps back to the base when someone quantizes it (e.g. to GGUF Q4_1), undoing the unlearning.

Groups run along the LAST dimension (the input dimension of a Linear weight [out, in], the hidden
dimension of an embedding [V, d]); when that dimension is not a multiple of the group size, the final
group is shorter and gets its own statistics. All arithmetic is float32; results come back in the
input's dtype and shape.

Non-finite rule: a group that contains NaN/inf, or whose dequantized values are not finite (q4_1 stores
d and min as fp16, which overflows beyond +-65504), is returned UNCHANGED and its half step is NaN:
there is no grid to snap to, and crashing in the middle of an evaluation would help nobody.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import MuleError


@dataclass(frozen=True)
class Grid:
    """One quantization grid: integer range [qmin, qmax] per group of `group` elements along the last dim
    (None = the whole last dim, i.e. per output channel); asymmetric grids store a min offset."""

    name: str
    group: int | None
    qmin: int
    qmax: int
    symmetric: bool


GRID_NAMES = ("q4_1", "int4", "int8")
GRIDS = {
    "q4_1": Grid("q4_1", 32, 0, 15, symmetric=False),  # llama.cpp quantize_row_q4_1_ref
    "int4": Grid("int4", 128, -8, 7, symmetric=True),
    "int8": Grid("int8", None, -127, 127, symmetric=True),
}


def get_grid(grid: str) -> Grid:
    """Look a grid up by name, failing with a one-line user-facing error that lists the known names."""
    try:
        return GRIDS[grid]
    except (KeyError, TypeError):
        raise MuleError(f"unknown quantization grid {grid!r}; known grids: {', '.join(GRID_NAMES)}") from None


def _asymmetric(x: torch.Tensor, g: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """GGUF Q4_1 on groups [..., G]: the index uses the fp32 step, dequant uses d and min rounded to fp16."""
    mn, mx = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
    d = (mx - mn) / g.qmax
    inv = torch.where(d != 0, 1.0 / torch.where(d != 0, d, torch.ones_like(d)), torch.zeros_like(d))
    q = torch.floor((x - mn) * inv + 0.5).clamp(max=g.qmax)  # x - mn >= 0: round half up, as the C cast
    d16, m16 = d.half().float(), mn.half().float()
    return m16 + q * d16, d / 2


def _symmetric(x: torch.Tensor, g: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric absmax grid on groups [..., G]: s = amax/qmax, an all-zero group stays zero."""
    s = x.abs().amax(-1, keepdim=True) / g.qmax
    safe = torch.where(s > 0, s, torch.ones_like(s))  # amax = 0 means x = 0, so x/1 rounds to 0
    q = torch.round(x / safe).clamp(g.qmin, g.qmax)
    return q * s, s / 2


def _snap(w: torch.Tensor, grid: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(dequantized, half step), both float32 in w's shape; the one place that does the grouping."""
    g = get_grid(grid)
    x = w.detach().float().reshape(w.shape or (1,))
    n = x.shape[-1]
    if x.numel() == 0:
        return x.reshape(w.shape), x.reshape(w.shape)
    size = min(g.group or n, n)
    pad = -n % size
    # Pad the partial last group with copies of its own last element: min/max/amax stay its own.
    xp = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], pad)], -1) if pad else x
    grouped = xp.reshape(*x.shape[:-1], -1, size)
    finite = torch.isfinite(grouped)
    clean = torch.where(finite, grouped, torch.zeros_like(grouped))
    deq, half = (_symmetric if g.symmetric else _asymmetric)(clean, g)
    ok = finite.all(-1, keepdim=True) & torch.isfinite(deq).all(-1, keepdim=True)
    deq = torch.where(ok, deq, grouped)
    half = torch.where(ok, half, torch.full_like(half, float("nan"))).expand_as(grouped)
    unpad = lambda t: t.reshape(*x.shape[:-1], -1)[..., :n].reshape(w.shape)  # noqa: E731
    return unpad(deq), unpad(half)


def quantize_dequantize(w: torch.Tensor, grid: str) -> torch.Tensor:
    """What a round-to-nearest quantized copy of w looks like after loading: same dtype and shape, no grad."""
    with torch.no_grad():
        fast = _dequantized_whole_groups(w, get_grid(grid))
        return (fast if fast is not None else _snap(w, grid)[0]).to(w.dtype)


def _dequantized_whole_groups(w: torch.Tensor, g: Grid) -> torch.Tensor | None:
    """The same values as `_snap(w)[0]` in about a third of the memory passes, for the common case (whole
    groups, every group's scale finite); None otherwise. Why: `--quant-aware` snaps every weight of the
    model on every quantized step. The non-finite checks run on the per-group statistics only: a NaN/inf
    element makes its group's scale non-finite, and finite scales give finite values."""
    x = w.detach().float()
    n = x.shape[-1] if x.ndim else 0
    size = min(g.group or n, n)
    if x.numel() == 0 or x.ndim == 0 or n % size:
        return None
    grouped = x.reshape(*x.shape[:-1], -1, size)
    if g.symmetric:
        s = grouped.abs().amax(-1, keepdim=True) / g.qmax
        if not bool(torch.isfinite(s).all()):
            return None
        safe = torch.where(s > 0, s, torch.ones_like(s))
        return (grouped / safe).round_().clamp_(g.qmin, g.qmax).mul_(s).reshape(w.shape)
    parts = _asymmetric_codes(grouped, g)
    if parts is None:
        return None
    codes, d16, m16 = parts
    return codes.mul_(d16).add_(m16).reshape(w.shape)


def _asymmetric_codes(grouped: torch.Tensor, g: Grid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(codes, fp16-rounded step, fp16-rounded min) of float32 groups [..., G] on an asymmetric grid, as
    `_asymmetric` computes them op for op; None when a group's statistics are not finite."""
    mn = grouped.amin(-1, keepdim=True)
    d = (grouped.amax(-1, keepdim=True) - mn) / g.qmax
    d16, m16 = d.half().float(), mn.half().float()
    if not bool(torch.isfinite(torch.stack([d, d16, m16])).all()):
        return None
    inv = torch.where(d != 0, 1.0 / torch.where(d != 0, d, torch.ones_like(d)), torch.zeros_like(d))
    return (grouped - mn).mul_(inv).add_(0.5).floor_().clamp_(max=g.qmax), d16, m16


def grid_codes(w: torch.Tensor, grid: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(codes, step, min) of a 2-D weight [out, in] on an asymmetric grid, grouped [out, in/G, G] /
    [out, in/G, 1], when codes · step + min gives w back exactly (w sits on the grid: quantizing it changes
    nothing), else None. Why: `mule distill --on-grid` trains the step and min of a model that ships on it."""
    g = get_grid(grid)
    if g.symmetric or w.ndim != 2 or not g.group or w.shape[-1] % g.group:
        return None
    grouped = w.detach().float().reshape(w.shape[0], -1, g.group)
    parts = _asymmetric_codes(grouped, g)  # reads grouped, returns new tensors
    if parts is None or not torch.equal(parts[0] * parts[1] + parts[2], grouped):
        return None
    return parts


def half_step(w: torch.Tensor, grid: str) -> torch.Tensor:
    """Per-element half quantization step (float32, w's shape): a weight that moved by less than this from
    its base value can snap back to the base's grid point."""
    with torch.no_grad():
        return _snap(w, grid)[1]


def fake_quant(w: torch.Tensor, grid: str, quantized: torch.Tensor | None = None) -> torch.Tensor:
    """Straight-through estimator: the forward pass sees the quantized weights (exactly; `quantized` when
    the caller already has them), the gradient is identity, so training can optimise what a quantized copy
    of the model will do."""
    return _StraightThrough.apply(w, quantize_dequantize(w, grid) if quantized is None else quantized)


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, quantized):
        return quantized.view_as(quantized)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def quantizable_weights(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Every 2-D floating-point parameter (Linear weights, embedding, a tied lm_head once): what
    weight-only quantizers touch. Norm weights and biases (1-D) stay in full precision."""
    seen: set[tuple[str, int]] = set()
    out = []
    for name, p in model.named_parameters():
        keys = {("id", id(p))} | ({("ptr", p.data_ptr())} if p.data_ptr() else set())
        if p.ndim != 2 or not p.is_floating_point() or keys & seen:
            continue
        seen |= keys
        out.append((name, p))
    return out


def quantize_model_(model: torch.nn.Module, grid: str) -> int:
    """Snap the model's weights to the grid in place (tied weights stay one Parameter); returns how many
    tensors were quantized."""
    get_grid(grid)
    weights = quantizable_weights(model)
    with torch.no_grad():
        for _, p in weights:
            p.copy_(quantize_dequantize(p, grid))
    return len(weights)
