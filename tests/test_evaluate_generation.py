"""Batched greedy generation (left padding, KV cache) gives the same text as one question at a time,
on the real default model in fp32 — the speed-up of `mule evaluate` must not change its scores."""

from __future__ import annotations

from mule_cli import lm

QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "How many legs does a spider have?",
    "Who is Harry Potter's best friend?",
]


def test_batched_and_one_by_one_generation_agree(default_model):
    model, tok = default_model
    prompts = [lm.chat_prompt(tok, q) for q in QUESTIONS]
    prompts.append(lm.chat_prompt(tok, QUESTIONS[3], prefill="Sure, here is the answer:"))
    batched = lm.generate(model, tok, prompts, max_new_tokens=20, batch_size=len(prompts))
    single = [lm.generate(model, tok, [p], max_new_tokens=20, batch_size=1)[0] for p in prompts]
    assert batched == single
    assert all(batched) and len(set(batched)) > 3  # real, distinct answers, not empty strings


def test_prefix_cached_greedy_matches_transformers_generate(default_model, monkeypatch):
    """The shared-prefix greedy loop (greedy.py) and transformers' generate give the same answers, with plain,
    prefilled and in-context (system-prompted) prompts mixed in one call."""
    from mule_cli import greedy
    from mule_cli.kv_prefix import assign_prefixes

    model, tok = default_model
    system = [{"role": "system", "content": "You answer every question about geography in one short sentence."}]
    prompts = [lm.chat_prompt(tok, q) for q in QUESTIONS]
    prompts += [lm.chat_prompt(tok, q, context=system) for q in QUESTIONS[:3]]
    prompts.append(lm.chat_prompt(tok, QUESTIONS[3], prefill="Sure, here is the answer:"))
    assert len(set(assign_prefixes([tok(p)["input_ids"][:-1] for p in prompts]))) >= 2  # two cached prefixes
    fast = lm.generate(model, tok, prompts, max_new_tokens=24, batch_size=8)
    monkeypatch.setattr(greedy, "supported", lambda m: False)
    assert lm.generate(model, tok, prompts, max_new_tokens=24, batch_size=8) == fast
