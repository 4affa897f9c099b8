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
