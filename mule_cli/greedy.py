"""Greedy decoding for `lm.generate`: the prompt prefix that rows share is encoded once, and rows leave the
batch when they finish.

Why: evaluate, attack's judge and standardize generate for hundreds of chat prompts that all begin with the
template's system turn (24 of about 40 tokens on the default model; hundreds with an in-context teacher), and
transformers' `generate` re-encodes it for every row and keeps stepping rows that already stopped.
Exact: the same greedy tokens as `generate` (a prefix's keys/values do not depend on what follows, and the
rest of each prompt gets the position ids it has in the whole prompt); tests compare the two.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .kv_prefix import batch_inputs, cache_kwarg, output_cache, prefix_cache_supported, split_prefixes
from .models import BATCH_SIZE

# generation settings that would add logits processors to transformers' greedy search: any of them set
# means this loop would not reproduce `generate`, so the caller falls back to it
_PROCESSORS = ("repetition_penalty", "no_repeat_ngram_size", "bad_words_ids", "min_length", "min_new_tokens",
               "forced_bos_token_id", "forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens",
               "sequence_bias", "encoder_repetition_penalty", "exponential_decay_length_penalty")
_NEUTRAL = {"repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "min_length": 0, "no_repeat_ngram_size": 0}


def supported(model) -> bool:
    """A model the prefix cache works for (kv_prefix.prefix_cache_supported) whose generation config adds
    no logits processor to greedy search."""
    gen = getattr(model, "generation_config", None)
    return prefix_cache_supported(model) and all(
        getattr(gen, name, None) in (None, _NEUTRAL.get(name), [], ()) for name in _PROCESSORS)


@torch.inference_mode()
def greedy_tokens(model, encoded: Sequence[Sequence[int]], *, max_new_tokens: int, pad_id: int,
                  eos_ids: Sequence[int], batch_size: int = BATCH_SIZE, stop: Callable[[list[int]], bool] | None = None,
                  on_rows: Callable[[int], None] | None = None) -> list[list[int]]:
    """The greedy continuation (token ids, without the end-of-turn token) of every prompt in `encoded`.

    `stop(tokens)` ends a row early (the caller's stop string); `on_rows(n)` is told as rows finish a batch.
    Rows with different cached prefixes share batches (the shorter prefixes are padded in the cache).
    """
    cache_arg = cache_kwarg(model)
    prefixes, rests, kv = split_prefixes(model, encoded)
    order = sorted(range(len(encoded)), key=lambda i: (len(rests[i]), len(prefixes[i])))  # little padding
    out: list[list[int]] = [[] for _ in encoded]
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        inputs = batch_inputs(model, [rests[i] for i in idx], [prefixes[i] for i in idx], kv, pad_id)
        for i, tokens in zip(idx, _decode_batch(model, inputs, max_new_tokens, set(eos_ids), stop, cache_arg)):
            out[i] = tokens
        if on_rows:
            on_rows(len(idx))
    return out


def _decode_batch(model, inputs: dict, max_new_tokens, eos, stop, cache_arg: str) -> list[list[int]]:
    """One batch: the prompts (their rests after the cached prefixes), then one token per step."""
    res = model(**inputs, use_cache=True, logits_to_keep=1)
    b = inputs["input_ids"].shape[0]
    mask = inputs["attention_mask"]
    tokens: list[list[int]] = [[] for _ in range(b)]
    active = list(range(b))
    last = inputs["position_ids"][:, -1:]
    for step in range(max_new_tokens):
        nxt = res.logits[:, -1].argmax(-1)
        keep = []
        for j, (row, t) in enumerate(zip(active, nxt.tolist())):
            if t in eos:
                continue
            tokens[row].append(t)
            if stop is None or not stop(tokens[row]):
                keep.append(j)
        if not keep or step == max_new_tokens - 1:
            break
        cache = output_cache(res)
        if len(keep) < len(active):
            sel = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(sel)
            mask, last, nxt = mask[sel], last[sel], nxt[sel]
            active = [active[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
        last = last + 1
        res = model(input_ids=nxt.unsqueeze(-1), attention_mask=mask, position_ids=last, use_cache=True,
                    logits_to_keep=1, **{cache_arg: cache})
    return tokens
