"""MCQ scoring by option log-likelihood: planted log-likelihoods decide the pick; batching is exact."""

from __future__ import annotations

import pytest
import torch
from types import SimpleNamespace

from conftest import make_tiny_llama
from mule_cli import lm
from mule_cli.evaluate.mcq import score_options
from mule_cli.evaluate.runner import EvalSettings, evaluate_one


class PlantedLM(torch.nn.Module):
    """A 'model' whose next-token logits are one fixed vector: tokens given a bonus are likely
    everywhere, so an option made only of boosted tokens has the highest mean log-likelihood."""

    def __init__(self, vocab_size: int, boosted: set[int], bonus: float = 8.0):
        super().__init__()
        bias = torch.zeros(vocab_size)
        bias[sorted(boosted)] = bonus
        self.bias = torch.nn.Parameter(bias)

    def forward(self, input_ids, attention_mask=None, past_key_values=None, logits_to_keep=0, **_):
        from transformers import DynamicCache

        length = 1 if logits_to_keep == 1 else input_ids.shape[1]
        return SimpleNamespace(logits=self.bias.expand(input_ids.shape[0], length, -1),
                               past_key_values=past_key_values if past_key_values is not None else DynamicCache())


def ids(tokenizer, text):
    return set(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_planted_loglik_decides_pick_accuracy_and_refusal(tokenizer, shared_prefix):
    recs = [
        {"id": "n1", "objective": "neighbor", "question": "Capital of France?", "answer": "Paris",
         "choices": ["London", "Paris", "I don't know"], "answer_index": 1},
        {"id": "n2", "objective": "neighbor", "question": "Capital of Japan?", "answer": "Tokyo",
         "choices": ["Tokyo", "Berlin", "No idea."], "answer_index": 0},
        {"id": "n3", "objective": "neighbor", "question": "Largest ocean?", "answer": "Pacific",
         "choices": ["Pacific", "Atlantic", "Arctic"], "answer_index": 0},
    ]
    planted = ids(tokenizer, "Paris") | ids(tokenizer, "No idea.") | ids(tokenizer, "Atlantic")
    others = set().union(*(ids(tokenizer, c) for r in recs for c in r["choices"]
                           if c not in ("Paris", "No idea.", "Atlantic")))
    assert not planted & others, "planted tokens must not appear in the options meant to lose"
    model = PlantedLM(len(tokenizer), planted)
    metrics, rows = evaluate_one(model, tokenizer, recs, settings=EvalSettings(batch_size=2, progress=False,
                                                                                 shared_prefix=shared_prefix))
    picks = {r["id"]: r["picked_option"] for r in rows}
    assert picks == {"n1": "Paris", "n2": "No idea.", "n3": "Atlantic"}
    assert metrics["neighbor_acc"] == pytest.approx(100 / 3)       # only n1 correct
    assert metrics["neighbor_refusal"] == pytest.approx(100 / 3)   # n2 picked its refusal
    assert metrics["n_neighbor"] == 3 and metrics["forget_rouge"] is None and metrics["asr"] is None
    assert [r["refusal_picked"] for r in rows] == [False, True, False]


@pytest.mark.parametrize("shared_prefix,batch_size", [(True, 2), (True, 3), (True, 16), (False, 5)])
def test_batched_option_scores_match_a_direct_computation(tokenizer, shared_prefix, batch_size):
    """Padding (left for shared prompts, right for options), the cached system turn, options sorted into
    their own batches, cache reuse and batching change nothing (a sharp random model, so that a wrong
    position or cache row shows)."""
    tiny_model = make_tiny_llama(len(tokenizer), seed=7, tie_word_embeddings=False, initializer_range=0.5)
    questions = ("Who wrote The Hobbit?", "Name a colour.", "What is the capital of a country in Europe, please?")
    prompts = [lm.chat_prompt(tokenizer, q) for q in questions]
    options = [["J. R. R. Tolkien", "C. S. Lewis", "I do not know."], ["Blue", "A shade of green"],
               ["Paris", "Rome is the capital of Italy", "Berlin", "I don't know"]]
    batched = score_options(tiny_model, tokenizer, prompts, options, batch_size=batch_size,
                            shared_prefix=shared_prefix)
    for prompt, opts, got in zip(prompts, options, batched):
        for opt, value in zip(opts, got):
            p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            r = tokenizer(opt, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = tiny_model(input_ids=torch.tensor([p + r])).logits[0].float()
            logp = torch.log_softmax(logits, -1)
            direct = torch.stack([logp[len(p) - 1 + k, tok] for k, tok in enumerate(r)]).mean().item()
            assert value == pytest.approx(direct, abs=1e-4)
