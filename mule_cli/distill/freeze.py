"""`--freeze NAMES`: keep some weights of the student at the base's values.

Why: on the default model (tied input/output embeddings) the forget-side loss pushes the logits of the
answer tokens down, and the cheapest way to move a logit is that token's output embedding, which every
other question that needs the token shares (retain answers turn into other or broken names). Freezing
`embed_tokens` forces the change into the decoder layers instead. Matches are substrings of the names
`model.named_parameters()` gives (e.g. `embed_tokens`, `lm_head`, `layers.0.`, `mlp`).
"""

from __future__ import annotations

import torch

from ..errors import MuleError
from ..objective_options import comma_list


def parse_freeze(value: str | tuple | list | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(comma_list(value)))


def freeze(lm: torch.nn.Module, patterns: tuple[str, ...]) -> None:
    """Set requires_grad=False on every parameter whose name contains a pattern. A pattern that matches
    nothing is an error (a typo would silently train everything); so is freezing every trainable weight."""
    if not patterns:
        return
    named = list(lm.named_parameters())
    unmatched = [p for p in patterns if not any(p in name for name, _ in named)]
    if unmatched:
        sample = ", ".join(name for name, _ in named[:3])
        raise MuleError(f"--freeze: no weight name contains {', '.join(map(repr, unmatched))} "
                        f"(names look like {sample}, …)")
    for name, param in named:
        if any(p in name for p in patterns):
            param.requires_grad_(False)
    if not any(p.requires_grad for _, p in named):
        raise MuleError(f"--freeze {','.join(patterns)} leaves no weight to train")
