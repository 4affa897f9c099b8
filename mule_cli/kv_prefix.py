"""Shared-prefix KV caches: what many token sequences begin with is encoded once and reused read-only.

Used by the distill teacher (distill/prefix_cache.py), greedy generation (greedy.py) and MCQ scoring.
Exact: in a causal decoder a prefix's keys and values do not depend on what follows, as long as what
follows gets the position ids it has in the whole sequence.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import torch

MIN_PREFIX = 8  # shorter shared prefixes are not worth a separate forward


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all sequences share."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return n


def best_prefix(heads: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The prefix that saves the most tokens: the one every head shares, or the longest one a majority
    shares when that saves more (the demos every record of an objective sees but the few it contains,
    which then run whole). Sorted heads: a run of neighbours shares the prefix its ends share."""
    if not heads:
        return ()
    ranked = sorted(heads)
    best = ranked[0][:common_prefix_length(ranked)]
    saved = len(best) * len(ranked)
    m = len(ranked) // 2 + 1
    for i in range(len(ranked) - m + 1):
        n = common_prefix_length([ranked[i], ranked[i + m - 1]])
        if n * m <= saved:
            continue
        count = sum(1 for h in ranked if h[:n] == ranked[i][:n])
        if n * count > saved:
            best, saved = ranked[i][:n], n * count
    return best


def decoder_of(lm):
    """The model's decoder stack (`get_decoder()`), or None when it has none of its own."""
    get = getattr(lm, "get_decoder", None)
    try:
        decoder = get() if get is not None else None
    except (AttributeError, NotImplementedError):
        decoder = None
    return decoder if decoder is not None and decoder is not lm else None


def prefix_cache_supported(lm) -> bool:
    """Whether a prefix can be encoded once and reused: a decoder whose cache keeps every position (no
    sliding window), and forwards (the model's and its decoder's) that take position ids and a cache."""
    config, decoder = getattr(lm, "config", None), decoder_of(lm)
    if config is None or decoder is None:
        return False
    if getattr(config, "sliding_window", None) or any(
            t != "full_attention" for t in getattr(config, "layer_types", None) or ()):
        return False
    for forward in (lm.forward, decoder.forward):
        params = inspect.signature(forward).parameters
        if "position_ids" not in params or not ("cache" in params or "past_key_values" in params):
            return False
    return True


def cache_kwarg(module) -> str:
    """The forward argument that takes a KV cache: `cache` in recent transformers, `past_key_values` before
    (passing the old name now only logs a deprecation warning into the user's output)."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def output_cache(out):
    """The KV cache of a forward's output (transformers >= 5.2x names the field `cache`)."""
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


def encode_prefix(decoder, prefix: Sequence[int], device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of `prefix` run alone through `decoder` (a decoder or a whole causal LM)."""
    out = decoder(input_ids=torch.tensor([list(prefix)], device=device), use_cache=True)
    return key_values(output_cache(out))


def expanded_cache(kv: list[tuple[torch.Tensor, torch.Tensor]], batch: int, config):
    """A fresh cache object over read-only views of a prefix's keys/values, expanded over the batch (a forward
    appends to the cache object, never to these tensors)."""
    return make_cache([(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in kv], config)


def make_cache(layers: list[tuple[torch.Tensor, torch.Tensor]], config):
    """A transformers DynamicCache holding per-layer [B, heads, T, d] keys and values."""
    from transformers import DynamicCache

    if hasattr(DynamicCache, "from_legacy_cache"):
        return DynamicCache.from_legacy_cache(tuple(layers))
    return DynamicCache(ddp_cache_data=layers, config=config)


def key_values(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def assign_prefixes(heads: Sequence[Sequence[int]], min_prefix: int = MIN_PREFIX) -> list[tuple]:
    """The cached prefix of every row (() = none), a prefix of its head (the part of it that may be cached):
    rows are sorted, runs of neighbours sharing at least `min_prefix` tokens get their common prefix, and a
    run is split where that saves more tokens than encoding one more prefix costs."""
    heads = [tuple(h) for h in heads]
    order = sorted(range(len(heads)), key=lambda i: heads[i])
    out: list[tuple] = [()] * len(heads)

    def lcp(a: int, b: int) -> int:
        return common_prefix_length([heads[order[a]], heads[order[b]]])

    def place(lo: int, hi: int) -> None:  # sorted positions lo..hi-1, one run
        n = lcp(lo, hi - 1)
        if hi - lo > 1:
            links = [lcp(k, k + 1) for k in range(lo, hi - 1)]
            weakest = min(links)
            cuts = [lo] + [lo + k + 1 for k, v in enumerate(links) if v == weakest] + [hi]
            parts = [(a, b, lcp(a, b - 1)) for a, b in zip(cuts, cuts[1:])]
            split_saves = sum(m * (b - a) - m for a, b, m in parts if m >= min_prefix and b - a > 1)
            if split_saves > n * (hi - lo) - n:
                for a, b, m in parts:
                    if m >= min_prefix and b - a > 1:
                        place(a, b)
                return
        if n >= min_prefix and hi - lo > 1:  # a prefix only one row uses saves nothing
            for k in range(lo, hi):
                out[order[k]] = heads[order[k]][:n]

    lo = 0
    for k in range(1, len(order) + 1):
        if k == len(order) or lcp(k - 1, k) < min_prefix:
            place(lo, k)
            lo = k
    return out


def split_prefixes(model, seqs: Sequence[Sequence[int]], heads: Sequence[Sequence[int]] | None = None):
    """(prefixes, rests, keys/values by prefix): each row's cached prefix (chosen among `heads`, the part of
    each row that may be cached; default all but its last token), the tokens left to run, and every prefix
    encoded once. No prefixes (every row runs whole) for a model the cache does not work for."""
    if not prefix_cache_supported(model):
        return [()] * len(seqs), [list(seq) for seq in seqs], {}
    prefixes = assign_prefixes([seq[:-1] for seq in seqs] if heads is None else heads)
    device = next(model.parameters()).device
    kv = {p: encode_prefix(decoder_of(model), p, device) for p in set(prefixes) if p}
    return prefixes, [list(seq[len(p):]) for seq, p in zip(seqs, prefixes)], kv


def batch_inputs(model, rests: Sequence[Sequence[int]], prefixes: Sequence[tuple], kv: dict, pad_id: int) -> dict:
    """Forward arguments for a batch of rows, each running its rest (left-padded) on a cache holding its
    prefix: shorter prefixes are padded (masked) to the longest, and the rest gets the position ids it has
    in the whole row. A view without copies when the rows share one prefix; no cache when none has one."""
    from .lm import pad_batch

    b, width = len(prefixes), max(len(p) for p in prefixes)
    device = next(model.parameters()).device
    prefix_mask = torch.zeros(b, width, dtype=torch.long, device=device)
    for r, p in enumerate(prefixes):
        prefix_mask[r, :len(p)] = 1
    ids, rest_mask = pad_batch(rests, pad_id, left=True)
    ids, rest_mask = ids.to(device), rest_mask.to(device)
    inputs = {"input_ids": ids, "attention_mask": torch.cat([prefix_mask, rest_mask], dim=1),
              "position_ids": prefix_mask.sum(1, keepdim=True) + (rest_mask.cumsum(-1) - 1).clamp(min=0)}
    if width == 0:
        return inputs
    if len(set(prefixes)) == 1:
        cache = expanded_cache(kv[prefixes[0]], b, model.config)
    else:
        layers = []
        for layer in range(len(next(iter(kv.values())))):
            k0, v0 = kv[next(p for p in prefixes if p)][layer]
            keys = k0.new_zeros(b, k0.shape[1], width, k0.shape[3])
            values = v0.new_zeros(b, v0.shape[1], width, v0.shape[3])
            for r, p in enumerate(prefixes):
                if p:
                    keys[r, :, :len(p)] = kv[p][layer][0][0]
                    values[r, :, :len(p)] = kv[p][layer][1][0]
            layers.append((keys, values))
        cache = make_cache(layers, model.config)
    return {**inputs, cache_kwarg(model): cache}
