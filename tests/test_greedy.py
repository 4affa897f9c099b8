"""Greedy decoding with a shared-prefix cache (mule_cli/greedy.py) against transformers' `generate`, on a tiny
random Llama: the same tokens, whatever the prefix grouping, padding, batch size or rows that stop early."""

from __future__ import annotations

import random

import pytest
import torch

from conftest import make_tiny_llama
from mule_cli import greedy, kv_prefix, lm
from mule_cli.kv_prefix import assign_prefixes, prefix_cache_supported, split_prefixes

VOCAB, EOS, PAD = 300, 2, 0


def prompts(seed: int = 0) -> list[list[int]]:
    """Two groups sharing a 12- and a 20-token prefix, and rows sharing nothing; lengths differ."""
    rng = random.Random(seed)
    word = lambda n: [rng.randrange(3, VOCAB) for _ in range(n)]  # noqa: E731
    system, other = word(12), word(20)
    rows = [system + word(rng.randrange(1, 9)) for _ in range(7)]
    rows += [other + word(rng.randrange(1, 6)) for _ in range(4)]
    rows += [word(rng.randrange(2, 15)) for _ in range(3)]
    rng.shuffle(rows)
    return rows


def transformers_tokens(model, encoded, max_new_tokens):
    out = []
    for seq in encoded:  # one at a time: no padding at all
        ids = torch.tensor([seq])
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, num_beams=1, pad_token_id=PAD, eos_token_id=EOS)
        tokens = gen[0, len(seq):].tolist()
        out.append(tokens[:tokens.index(EOS)] if EOS in tokens else tokens)
    return out


@pytest.fixture(scope="module")
def model():
    # untied (tied, a random model repeats its input) and with large weights, so attention is sharp and a wrong
    # position or key changes the tokens
    return make_tiny_llama(VOCAB, seed=3, tie_word_embeddings=False, initializer_range=0.5)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_same_tokens_as_transformers_generate(model, batch_size):
    encoded = prompts()
    want = transformers_tokens(model, encoded, 10)
    got = greedy.greedy_tokens(model, encoded, max_new_tokens=10, pad_id=PAD, eos_ids=[EOS], batch_size=batch_size)
    assert got == want
    assert len({tuple(t) for t in got}) > 5  # distinct continuations, not one degenerate answer


def test_assign_prefixes_finds_both_shared_prefixes_and_leaves_the_rest_whole():
    encoded = prompts()
    prefixes = assign_prefixes([seq[:-1] for seq in encoded])
    assert sorted(len(p) for p in set(prefixes)) == [0, 12, 20]
    assert sorted(map(len, prefixes)).count(12) == 7 and sorted(map(len, prefixes)).count(20) == 4
    assert all(tuple(seq[:len(p)]) == p for seq, p in zip(encoded, prefixes))


def test_assign_prefixes_splits_a_run_only_where_that_saves_tokens():
    system = tuple(range(3, 13))  # 10 tokens all share
    a = [list(system) + [50 + i for i in range(30)] + [200 + k] for k in range(3)]  # +30 shared by three
    b = [list(system) + [90, 91] + [210 + k] for k in range(3)]  # +2 shared by three
    assert [len(p) for p in assign_prefixes(a + b)] == [40] * 3 + [12] * 3
    # pairs sharing one token more than all four: two 11-token prefixes save less than one 10-token one
    pairs = [list(system) + [t, 300 + k] for t in (90, 91) for k in range(2)]
    assert assign_prefixes(pairs) == [system] * 4
    assert assign_prefixes([list(system) + [1], list(system) + [2]]) == [system, system]
    assert assign_prefixes([[5, 6, 7], [8, 9]]) == [(), ()]


def test_split_prefixes_keep_one_token_to_run(model):
    """A prompt that is exactly the shared prefix of the others still runs (its last token predicts)."""
    base = list(range(3, 15))
    encoded = [base, base + [20], base + [21, 22]]
    prefixes, rests, kv = split_prefixes(model, encoded)
    assert prefixes == [tuple(base[:-1])] * 3 and [len(r) for r in rests] == [1, 2, 3] and list(kv) == [prefixes[0]]


def test_rows_that_stop_early_leave_the_batch_without_changing_the_others(model):
    """Each row stops after its own number of tokens; the rest must still match the full run token for token
    (the batch's cache, mask and positions are narrowed to the rows left)."""
    encoded = prompts(1)
    full = greedy.greedy_tokens(model, encoded, max_new_tokens=12, pad_id=PAD, eos_ids=[EOS], batch_size=16)
    stop = lambda tokens: len(tokens) >= 2 + tokens[0] % 9  # noqa: E731
    got = greedy.greedy_tokens(model, encoded, max_new_tokens=12, pad_id=PAD, eos_ids=[EOS], batch_size=16,
                               stop=stop)
    lengths = [len(t) for t in got]
    assert len(set(lengths)) > 3  # rows really left at different steps
    for g, f in zip(got, full):
        assert g == f[:len(g)] and (len(g) == len(f) or stop(g))


def test_end_of_turn_ends_a_row_and_is_not_returned(model):
    encoded = prompts(2)
    free = greedy.greedy_tokens(model, encoded, max_new_tokens=6, pad_id=PAD, eos_ids=[EOS], batch_size=4)
    r = next(r for r, f in enumerate(free) if f[2] not in f[:2])
    eos = free[r][2]  # make the third token of row r an end-of-turn token
    got = greedy.greedy_tokens(model, encoded, max_new_tokens=6, pad_id=PAD, eos_ids=[EOS, eos], batch_size=4)
    assert got[r] == free[r][:2]
    for g, f in zip(got, free):
        assert g == (f[:f.index(eos)] if eos in f else f)


def test_models_it_cannot_reproduce_go_through_transformers():
    assert greedy.supported(make_tiny_llama(VOCAB))
    assert not greedy.supported(make_tiny_llama(VOCAB, sliding_window=16, layer_types=["sliding_attention"] * 2))
    penalised = make_tiny_llama(VOCAB)
    penalised.generation_config.repetition_penalty = 1.3
    assert not greedy.supported(penalised)
    assert prefix_cache_supported(penalised)  # scoring does not go through the generation config


def test_scoring_caches_the_prefix_when_generation_cannot(tokenizer, monkeypatch):
    """A repetition penalty sends generation to transformers, but continuation_logprobs still splits
    prefixes (and gives the same scores as without them)."""
    tiny = make_tiny_llama(len(tokenizer), seed=6, tie_word_embeddings=False, initializer_range=0.5)
    tiny.generation_config.repetition_penalty = 1.3
    prompts = [lm.chat_prompt(tokenizer, q) for q in ("Who wrote Hamlet?", "Name a colour.")] * 2
    conts = ["Shakespeare", "Blue", "Marlowe", "Red"]
    used = []
    real = kv_prefix.batch_inputs
    monkeypatch.setattr(kv_prefix, "batch_inputs",
                        lambda model, rests, prefixes, *a: used.append(any(prefixes)) or real(model, rests, prefixes, *a))
    cached = lm.continuation_logprobs(tiny, tokenizer, prompts, conts, batch_size=3)
    assert used and all(used)  # every batch ran on a cached prefix
    monkeypatch.setattr(kv_prefix, "prefix_cache_supported", lambda m: False)
    plain = lm.continuation_logprobs(tiny, tokenizer, prompts, conts, batch_size=3)
    assert cached == pytest.approx(plain, abs=1e-4)


def test_generate_uses_the_fallback_when_unsupported(model, tokenizer, monkeypatch):
    """lm.generate gives the same text on both paths (the fallback is transformers' generate)."""
    tiny = make_tiny_llama(len(tokenizer), seed=4, tie_word_embeddings=False)
    texts = [lm.chat_prompt(tokenizer, q) for q in ("Who wrote Hamlet?", "What is two plus two?", "Name a colour.")]
    fast = lm.generate(tiny, tokenizer, texts, max_new_tokens=8, batch_size=2, cut_blank_line=False)
    monkeypatch.setattr(greedy, "supported", lambda m: False)
    slow = lm.generate(tiny, tokenizer, texts, max_new_tokens=8, batch_size=2, cut_blank_line=False)
    assert fast == slow and all(fast)


def test_continuation_logprobs_batched_equal_a_direct_computation(tokenizer):
    """Left-padded batches scoring only the continuation positions equal the full-logits formula run one
    pair at a time (a sharp random model, so a wrong position or an off-by-one target shows)."""
    tiny = make_tiny_llama(len(tokenizer), seed=5, tie_word_embeddings=False, initializer_range=0.5)
    prompts = [lm.chat_prompt(tokenizer, q) for q in ("Who wrote Hamlet?", "Name a colour.", "What is 2+2?")]
    conts = ["William Shakespeare wrote it in about 1600.", "Blue", "Four, of course; two and two make four."]
    prompts, conts = prompts * 2, conts + conts[::-1]
    got = lm.continuation_logprobs(tiny, tokenizer, prompts, conts, batch_size=4)
    for p, c, value in zip(prompts, conts, got):
        full, resp = lm.encode_pair(tokenizer, p, c, add_eot=False)
        with torch.no_grad():
            logp = torch.log_softmax(tiny(input_ids=torch.tensor([full])).logits[0].float(), -1)
        n = len(resp)
        want = logp[len(full) - 1 - n:len(full) - 1].gather(-1, torch.tensor(full[-n:]).unsqueeze(-1)).mean()
        assert value == pytest.approx(want.item(), abs=1e-4)
    assert len({round(v, 3) for v in got}) == 5  # one pair repeats
