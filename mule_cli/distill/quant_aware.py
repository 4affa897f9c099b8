"""`--quant-aware GRID`: train the student through fake-quantized weights so its quantized copy forgets too.

Why: sixty steps at lr 5e-5 move the weights by less than half a quantization step, so snapping the
unlearned model back onto the 4-bit grid the default model ships in (GGUF Q4_1) returns the base's
answers (docs/RESULTS.md). Here the student's forward sees `quant.fake_quant(W)`: the same grid as the
`quant4/quant8` attacks, with a straight-through gradient into the full-precision master weights, which
are what the optimizer updates and what is saved. Steps alternate between the quantized and the plain
forward, so both the saved model and its quantized version are trained to forget.

Implemented by overriding the forward of each module that owns a 2-D weight (Linear, Embedding, LoRA
adapters, whose merged weight W + scale·BA is what gets quantized) instead of re-registering the
parameters: state-dict keys, checkpoints, DDP and FSDP's unsharding see an ordinary model. A weight
that several modules use (the tied embedding / lm_head) is snapped once per step, not once per use.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from ..quant import fake_quant, get_grid, quantizable_weights, quantize_dequantize
from .lora import LoRALinear


class QuantAware:
    """The switch every patched module reads: `active` = this forward runs on the grid."""

    def __init__(self, grid: str):
        get_grid(grid)
        self.grid = grid
        self.active = True
        self._patched: list[nn.Module] = []
        self.shared: set[int] = set()  # ids of weights more than one patched module uses
        self._snapped: dict[int, tuple] = {}  # shared weight id -> (weight, version, its grid values)

    def weight(self, w: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return w
        if id(w) not in self.shared:
            return fake_quant(w, self.grid)
        held = self._snapped.get(id(w))
        if held is None or held[0] is not w or held[1] != w._version:  # an optimizer step bumps _version
            held = (w, w._version, quantize_dequantize(w, self.grid))
            self._snapped[id(w)] = held
        return fake_quant(w, self.grid, quantized=held[2])

    def set_step(self, step: int) -> None:
        """Even steps (0, 2, ...) quantized, odd steps plain: half the updates optimise each model."""
        self.active = step % 2 == 0
        self._snapped.clear()

    def remove(self) -> None:
        """Put the modules' own forwards back (the weights were never changed)."""
        for module in self._patched:
            del module.forward
        self._patched.clear()
        self._snapped.clear()


def _linear(self, x):
    return F.linear(x, self._mule_quant.weight(self.weight), self.bias)


def _embedding(self, ids):
    return F.embedding(ids, self._mule_quant.weight(self.weight), self.padding_idx, self.max_norm,
                       self.norm_type, self.scale_grad_by_freq, self.sparse)


def _lora(self, x):
    if not self._mule_quant.active:
        return LoRALinear.forward(self, x)
    merged = self.base.weight + self.scale * (self.lora_b @ self.lora_a).to(self.base.weight.dtype)
    return F.linear(x, fake_quant(merged, self._mule_quant.grid).to(x.dtype), self.base.bias)


def enable(model: nn.Module, grid: str) -> QuantAware:
    """Patch every module of `model` that owns a 2-D weight; fails if a 2-D weight would stay unquantized
    (an architecture with other weight-owning modules: training and the attack would see different grids)."""
    qa = QuantAware(grid)
    covered: set[int] = set()
    uses: dict[int, int] = {}
    lora_bases = {id(m.base) for m in model.modules() if isinstance(m, LoRALinear)}
    for module in model.modules():
        if isinstance(module, LoRALinear):
            forward, owned = _lora, [module.base.weight, module.lora_a, module.lora_b]
        elif isinstance(module, nn.Linear) and id(module) not in lora_bases:
            forward, owned = _linear, [module.weight]
        elif isinstance(module, nn.Embedding):
            forward, owned = _embedding, [module.weight]
        else:
            continue
        module._mule_quant = qa
        module.forward = types.MethodType(forward, module)
        qa._patched.append(module)
        covered |= {id(p) for p in owned}
        for p in owned:
            uses[id(p)] = uses.get(id(p), 0) + 1
    qa.shared = {i for i, n in uses.items() if n > 1}
    missing = [name for name, p in quantizable_weights(model) if id(p) not in covered]
    if missing:
        qa.remove()
        raise ValueError(f"--quant-aware cannot quantize {', '.join(missing[:3])}: only Linear, Embedding "
                         f"and LoRA weights are supported")
    return qa
