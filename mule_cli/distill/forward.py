"""Logits at the response positions only.

Why: the full [B, L, V] logits of a 50k-vocabulary model dwarf everything else in a step, and the
loss needs only the R response rows of each sequence. The decoder runs on the whole sequence, its
hidden states are gathered at the response positions, and only those rows go through the LM head.
Wrapped as one nn.Module so DDP/FSDP see an ordinary forward call.
"""

from __future__ import annotations

import torch
from torch import nn


class ResponseLogits(nn.Module):
    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[B, L] tokens, [B, R] positions -> [B, R, V] logits (model dtype)."""
        decoder = _decoder(self.lm)
        head = self.lm.get_output_embeddings()
        if decoder is None or head is None:  # unusual architecture: full logits, then gather
            logits = self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
            return logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        picked = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        logits = head(picked)
        cap = getattr(self.lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits


def _decoder(lm: nn.Module):
    get = getattr(lm, "get_decoder", None)
    try:
        decoder = get() if get is not None else None
    except (AttributeError, NotImplementedError):
        decoder = None
    return decoder if decoder is not None and decoder is not lm else None


def decoder_layers(lm: nn.Module) -> list[nn.Module]:
    """The transformer blocks (the longest ModuleList), for gradient analysis."""
    best = []
    for module in lm.modules():
        if isinstance(module, nn.ModuleList) and len(module) > len(best):
            best = list(module)
    return best
