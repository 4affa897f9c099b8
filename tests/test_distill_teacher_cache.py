"""Teacher output cache: a record's target is computed once (amplified in hidden space) and turned into
logits through the lm_head at loss time; the logits equal the uncached teacher's."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_llama, records
from mule_cli.distill.batches import build_examples, collate
from mule_cli.distill.teacher import Teacher
from mule_cli.intentions import from_target

RECORDS = records("f1 f2 r1 r2 n1 a1")
AMPLIFY = {"forget": 2.0, "adversarial": 2.0, "neighbor": 1.0, "retain": 0.0}


def _examples(tokenizer):
    return build_examples(RECORDS, tokenizer, method="ours", prompts=from_target("Harry Potter"), n_demos=1)


def _teachers(tokenizer):
    model = make_tiny_llama(len(tokenizer))
    return Teacher(model, AMPLIFY, cache=True), Teacher(model, AMPLIFY, cache=False)


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4, 5], [5, 3, 1], [2, 0]])
def test_cached_logits_equal_the_uncached_teachers(tokenizer, order):
    """Mixed objectives (amplified and not) in one batch, rows of different lengths (padding), a batch
    computed fresh and then served from the cache in another composition."""
    cached, plain = _teachers(tokenizer)
    examples = _examples(tokenizer)
    warm = collate(examples, tokenizer.pad_token_id)
    cached.logits(warm)  # fills the cache from one batch composition
    batch = collate([examples[i] for i in order], tokenizer.pad_token_id)
    want = plain.logits(batch)
    got = cached.logits(batch)
    valid = batch.student.valid
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got[valid], want[valid], atol=1e-4, rtol=1e-4)
    assert len(cached.cache) == len(examples)


def test_the_cache_serves_repeat_visits_without_a_forward(tokenizer, monkeypatch):
    cached, _ = _teachers(tokenizer)
    batch = collate(_examples(tokenizer), tokenizer.pad_token_id)
    first = cached.logits(batch)
    monkeypatch.setattr(cached.net, "hidden", lambda *a: pytest.fail("the teacher ran again"))
    torch.testing.assert_close(cached.logits(batch), first, atol=0, rtol=0)


def test_a_changed_response_is_a_new_entry_and_use_examples_drops_stale_ones(tokenizer):
    cached, plain = _teachers(tokenizer)
    examples = _examples(tokenizer)
    cached.logits(collate(examples, tokenizer.pad_token_id))
    changed = build_examples(RECORDS, tokenizer, method="ours", prompts=from_target("Harry Potter"), n_demos=1,
                             generated={"r1": "Paris, the capital."})
    batch = collate(changed, tokenizer.pad_token_id)
    torch.testing.assert_close(cached.logits(batch)[batch.student.valid], plain.logits(batch)[batch.student.valid],
                               atol=1e-4, rtol=1e-4)
    assert len(cached.cache) == len(examples) + 1
    cached.use_examples(changed)
    assert len(cached.cache) == len(changed)


def test_soft_capped_logits_are_not_cached(tokenizer):
    model = make_tiny_llama(len(tokenizer))
    model.config.final_logit_softcapping = 30.0
    assert Teacher(model, AMPLIFY).cache is None


def test_a_resumed_run_reuses_the_checkpointed_targets_and_ends_bit_for_bit(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from conftest import interrupt_then_resume, tiny_distill_config, write_jsonl
    from mule_cli.distill import distill

    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    kw = dict(lr=1e-2, max_steps=5, batch_size=2, amplify="forget=2,neighbor=1")
    distill(tiny_distill_config(tiny_model_dir, data, tmp_path / "full", **kw))
    interrupt_then_resume(lambda resume: tiny_distill_config(tiny_model_dir, data, tmp_path / "cut", resume=resume,
                                                             **kw), 2)
    a = load_file(str(tmp_path / "full/model/model.safetensors"))
    b = load_file(str(tmp_path / "cut/model/model.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    cache = torch.load(tmp_path / "cut/checkpoint/teacher_cache.pt", weights_only=False)
    assert len(cache) == 4  # what the 2 steps of 2 records before the interrupt computed
