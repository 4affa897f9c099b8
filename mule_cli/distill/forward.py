"""Logits at the response positions only.

Why: the full [B, L, V] logits of a 50k-vocabulary model dwarf everything else in a step, and the
loss needs only the R response rows of each sequence. The decoder runs on the whole sequence, its
hidden states are gathered at the response positions, and only those rows go through the LM head.
Wrapped as one nn.Module so DDP/FSDP see an ordinary forward call.
"""

from __future__ import annotations

import torch
from torch import nn

from ..kv_prefix import decoder_of


class ResponseLogits(nn.Module):
    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                hidden: bool = False) -> torch.Tensor:
        """[B, L] tokens, [B, R] positions -> [B, R, V] logits (model dtype); hidden=True: the [B, R, d]
        final-norm hidden states instead (the chunked loss multiplies them by the lm_head itself)."""
        if hidden:
            return self.hidden(input_ids, attention_mask, positions)
        if not self.linear_head:  # unusual architecture: full logits, then gather
            logits = self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
            logits = logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        else:
            logits = self.head(self.hidden(input_ids, attention_mask, positions))
        if self.softcap and self.linear_head:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    @property
    def softcap(self) -> float | None:
        return getattr(self.lm.config, "final_logit_softcapping", None)

    @property
    def linear_head(self) -> bool:
        """Whether the logits are lm_head(final-norm hidden state), nothing after it: then anything linear
        in the logits (the teacher's amplification) can be done on the hidden states instead."""
        return decoder_of(self.lm) is not None and self.lm.get_output_embeddings() is not None

    @property
    def logits_linear_in_hidden(self) -> bool:
        """logits = lm_head(hidden) exactly: a linear head and no soft-capping after it."""
        return self.linear_head and not self.softcap

    @property
    def head(self) -> nn.Module:
        return self.lm.get_output_embeddings()

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[B, R, d] final-norm hidden states at the response positions (needs `linear_head`)."""
        hidden = decoder_of(self.lm)(input_ids=input_ids, attention_mask=attention_mask,
                                     use_cache=False).last_hidden_state
        return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


def tied_head(lm: nn.Module) -> bool:
    """The lm_head weight is the input embedding's tensor: autograd sums their gradients before the leaf."""
    embedding, head = lm.get_input_embeddings(), lm.get_output_embeddings()
    return embedding is not None and head is not None and embedding.weight is head.weight


def decoder_layers(lm: nn.Module) -> list[nn.Module]:
    """The transformer blocks (the longest ModuleList), for gradient analysis."""
    best = []
    for module in lm.modules():
        if isinstance(module, nn.ModuleList) and len(module) > len(best):
            best = list(module)
    return best
