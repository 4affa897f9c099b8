"""`--on-grid`: train a model that ships quantized without leaving its quantization grid.

Why: the default model's Linear weights sit exactly on the GGUF Q4_1 grid (it is converted from a Q4_1
file). A model trained the usual way moves each weight by less than half a step, so quantizing it again
snaps it back to the base and the unlearning is gone (docs/RESULTS.md). Here each Linear weight is
W = q · d + m per group of 32 (Q4_1's codes q in 0..15, frozen; the group's step d and offset m trainable,
float32), so every update is a move on the grid and quantizing the saved model gives the saved model
back. What trains: d and m of the decoder's Linear layers and the norm gains (1-D, kept in full
precision by quantizers); the embedding (tied to the output head) stays frozen.

A group's minimum maps to q = 0 and its maximum to q = 15, so re-quantizing q · d + m recovers the same
codes, d and m (d and m are rounded to fp16 when saved, as Q4_1 stores them; a step trained below zero is
saved as the same weights with the codes mirrored).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MuleError
from ..quant import GRIDS, grid_codes

GRID = "q4_1"


def on_grid_linears(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers the grid trains: every one but the output head (tied to the frozen embedding)."""
    head = model.get_output_embeddings()
    return [m for m in model.modules() if isinstance(m, nn.Linear) and m is not head]


def _layer_codes(model: nn.Module) -> list[tuple[nn.Linear, tuple]] | None:
    """[(layer, its (codes, step, min))] when every trainable Linear weight sits on the Q4_1 grid, else None."""
    layers = on_grid_linears(model)
    found = [(mod, grid_codes(mod.weight, GRID)) for mod in layers]
    return found if layers and all(c is not None for _, c in found) else None


def ships_on_grid(model: nn.Module) -> bool:
    """Whether every trainable Linear weight sits on the Q4_1 grid (a model converted from a Q4_1 file):
    the condition for training on it without first losing accuracy to quantization."""
    return _layer_codes(model) is not None


def _forward(self, x):
    w = (self._grid_q * self.grid_step + self.grid_offset).reshape(self.weight.shape)
    return F.linear(x, w.to(x.dtype), self.bias)


def enable(model: nn.Module) -> int:
    """Re-parametrize the model's Linear layers on the grid; returns how many. Fails when a weight is off
    the grid: there is no grid to keep."""
    found = _layer_codes(model)
    if found is None:
        raise MuleError("--on-grid yes needs a model whose Linear weights sit on the Q4_1 grid (one converted "
                        "from a Q4_1 GGUF file, like the default model); this one's do not")
    return _reparametrize(model, found)


def _reparametrize(model: nn.Module, found: list) -> int:
    for mod, (q, d, m) in found:
        mod.register_buffer("_grid_q", q, persistent=False)
        mod.grid_step = nn.Parameter(d)
        mod.grid_offset = nn.Parameter(m)
        mod.weight.requires_grad_(False)
        mod.forward = types.MethodType(_forward, mod)
    model.get_input_embeddings().weight.requires_grad_(False)
    return len(found)


def finish(model: nn.Module) -> None:
    """Write each layer's grid weights (d and m rounded to fp16, as Q4_1 stores them) back into its weight
    and drop the extra parameters: the saved model is a plain one, on the grid."""
    for mod in model.modules():
        if not hasattr(mod, "_grid_q"):
            continue
        with torch.no_grad():
            q, d, m = mod._grid_q, mod.grid_step, mod.grid_offset
            flip = d < 0  # a step trained below zero: the same weights with codes 15 - q from the new minimum
            q = torch.where(flip, GRIDS[GRID].qmax - q, q)
            d, m = torch.where(flip, -d, d), torch.where(flip, m + GRIDS[GRID].qmax * d, m)
            w = q * d.half().float() + m.half().float()
            mod.weight.copy_(w.reshape(mod.weight.shape))
        del mod.grid_step, mod.grid_offset, mod._grid_q, mod.forward


# The grid's steps and offsets train at half --lr: each moves 32 weights at once, and at the full rate they
# cost the unquantized model Retain and neighbour accuracy (docs/RESULTS.md, "On the grid").
GRID_LR_SCALE = 0.5
GRID_PARAMS = (".grid_step", ".grid_offset")  # the parameters `enable` adds to each layer


def apply(setting: str, method: str, model: nn.Module, *, other_reparam: bool) -> int:
    """`--on-grid`: yes (enable, or fail), no, or auto = `ours` on a model that ships on the grid and trains
    all its weights (not under --lora-rank, --quant-aware or --fsdp: `other_reparam`). Returns how many
    layers now train on the grid (0: none). The codes are computed once, for the check and the layers."""
    if setting == "yes":
        return enable(model)
    if setting == "no" or method != "ours" or other_reparam:
        return 0
    found = _layer_codes(model)
    return _reparametrize(model, found) if found is not None else 0


def param_groups(module: nn.Module, lr: float) -> list[dict]:
    """The optimizer's parameter groups: the grid's steps and offsets at lr × GRID_LR_SCALE, the rest at lr
    (one group when nothing trains on the grid, so a plain run's optimizer is unchanged)."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    grid = [p for n, p in named if n.endswith(GRID_PARAMS)]
    rest = [p for n, p in named if not n.endswith(GRID_PARAMS)]
    groups = [{"params": rest}, {"params": grid, "lr": lr * GRID_LR_SCALE}]
    return [g for g in groups if g["params"]]
