"""Prefix KV cache for the frozen teacher: what every context of a group begins with is encoded once.

Why: every teacher context of an objective starts with the same tokens (the chat template's system turn
holding the intention prompt, and whatever demonstrations they all share), and every plain context with
the template's default system turn. The teacher used to re-encode them for every record of every batch.
Here the longest token prefix each group shares is run through the decoder once per run; a batch then
runs only the rest of each context, on top of a read-only copy of that prefix's keys and values.

Exact: in a causal decoder a prefix's keys and values do not depend on what follows, and the rest gets
the position ids it has in the whole sequence.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch

from ..kv_prefix import MIN_PREFIX, best_prefix, cache_kwarg, decoder_of, encode_prefix, expanded_cache


class PrefixCache:
    """Shared-prefix keys/values per group, and the decoder's final hidden states computed on top of them.

    `share(group, seqs, keep)` declares a group's sequences; `keep[i]` tokens at the end of sequence i
    (its response and the position predicting the response's first token) always stay outside the prefix.
    `hidden(side, groups)` equals `ResponseLogits.hidden` on the same Side, row by row.
    """

    def __init__(self, net, min_prefix: int = MIN_PREFIX):
        self.net = net
        self.min_prefix = min_prefix
        self.prefixes: dict[Hashable, tuple[int, ...]] = {}
        self._kv: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._decoder = decoder_of(net.lm)
        self._cache_arg = cache_kwarg(self._decoder)

    def share(self, group: Hashable, seqs: Sequence[Sequence[int]], keep: Sequence[int]) -> None:
        prefix = best_prefix([tuple(s[:len(s) - k]) for s, k in zip(seqs, keep)])
        if len(prefix) >= self.min_prefix:
            self.prefixes[group] = prefix
        else:
            self.prefixes.pop(group, None)

    def hidden(self, side, groups: Sequence[Hashable]) -> torch.Tensor:
        """[B, R, d] final-norm hidden states at `side`'s response positions; rows whose group has a prefix
        (and that start with it) run only the rest of their context. Either padding side."""
        starts = _first_tokens(side.attention_mask)
        lengths = side.attention_mask.sum(1).tolist()
        by_prefix: dict[tuple, list[int]] = {}
        for row, group in enumerate(groups):
            prefix = self.prefixes.get(group, ())
            s, valid = starts[row], side.valid[row]
            first_response = int(side.positions[row][valid].min()) - s if valid.any() else 0
            if first_response < len(prefix) or tuple(side.input_ids[row, s:s + len(prefix)].tolist()) != prefix:
                prefix = ()
            by_prefix.setdefault(prefix, []).append(row)
        out = None
        for prefix, rows in by_prefix.items():
            idx = torch.tensor(rows, device=side.input_ids.device)
            if prefix:
                h = self._suffix_hidden(prefix, side, rows, starts, lengths)
            else:
                h = self.net.hidden(side.input_ids[idx], side.attention_mask[idx], side.positions[idx])
            if out is None:
                out = h.new_zeros(len(groups), *h.shape[1:])
            out[idx] = h
        return out

    def _suffix_hidden(self, prefix: tuple, side, rows: list[int], starts: list[int],
                       lengths: list[int]) -> torch.Tensor:
        """Hidden states of `rows`, each running only what follows `prefix`, right-padded, on the cache."""
        p, b = len(prefix), len(rows)
        rests = [side.input_ids[r, starts[r] + p:starts[r] + lengths[r]] for r in rows]
        width = max(len(t) for t in rests)
        ids = side.input_ids.new_zeros(b, width)
        mask = side.attention_mask.new_zeros(b, p + width)
        mask[:, :p] = 1
        for i, rest in enumerate(rests):
            ids[i, :len(rest)] = rest
            mask[i, p:p + len(rest)] = 1
        position_ids = torch.arange(p, p + width, device=ids.device).expand(b, -1)
        hidden = self._decoder(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                               **{self._cache_arg: self._cache(prefix, b)}).last_hidden_state
        shift = torch.tensor([starts[r] + p for r in rows], device=ids.device).view(-1, 1)
        positions = (side.positions[rows] - shift).clamp(0, width - 1)
        return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))

    def _cache(self, prefix: tuple, batch: int):
        if prefix not in self._kv:
            self._kv[prefix] = encode_prefix(self._decoder, prefix, next(self.net.lm.parameters()).device)
        return expanded_cache(self._kv[prefix], batch, self.net.lm.config)


def _first_tokens(mask: torch.Tensor) -> list[int]:
    """Index of each row's first real token (0 when right-padded)."""
    return mask.long().argmax(1).tolist()
