"""Teacher prefix KV cache: the prefix a group of contexts shares is encoded once, each batch runs only the
rest, and the teacher's targets equal the uncached forward's."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_llama, records
from mule_cli.distill.batches import Side, build_examples, collate
from mule_cli.distill.prefix_cache import PrefixCache
from mule_cli.distill.refusal_anchors import refusal_anchor_records
from mule_cli.distill.teacher import Teacher
from mule_cli.intentions import from_target
from mule_cli.kv_prefix import best_prefix, common_prefix_length
from mule_cli.lm import pad_batch

RECORDS = records("f1 f2 r1 r2 n1 n2 a1")
AMPLIFY = {"forget": 2.0, "adversarial": 2.0, "neighbor": 1.0, "retain": 0.0}


def _examples(tokenizer, recs=RECORDS, demos=1):
    return build_examples(recs, tokenizer, method="ours", prompts=from_target("Harry Potter"), n_demos=demos)


def _count_embedded_tokens(model):
    """A hook that counts the tokens the decoder embeds: how much the teacher actually ran."""
    seen = []
    model.get_input_embeddings().register_forward_hook(lambda _m, args, _o: seen.append(args[0].numel()))
    return seen


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[1, 2], [1, 2]]) == 2
    assert common_prefix_length([[5], [1]]) == 0
    assert common_prefix_length([]) == 0


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4, 5, 6], [6, 4, 1], [2, 3]])
def test_prefixed_targets_equal_the_uncached_teachers(tokenizer, order):
    """Mixed objectives (each its own prefix, amplified and not, so the plain prefix too), rows of
    different lengths (padding); fp32, within 1e-4."""
    model = make_tiny_llama(len(tokenizer))
    prefixed, plain = Teacher(model, AMPLIFY), Teacher(model, AMPLIFY, cache=False)
    examples = _examples(tokenizer)
    prefixed.use_examples(examples)
    groups = prefixed.prefixes.prefixes
    assert {g[1] for g in groups if g[0] == "teacher"} == {"forget", "retain", "neighbor", "adversarial"}
    assert ("plain",) in groups and all(len(p) >= 8 for p in groups.values())
    batch = collate([examples[i] for i in order], tokenizer.pad_token_id)
    seen = _count_embedded_tokens(model)
    got = prefixed.logits(batch)
    ran = sum(seen)
    want = plain.logits(batch)
    valid = batch.student.valid
    torch.testing.assert_close(got[valid], want[valid], atol=1e-4, rtol=1e-4)
    assert ran < sum(seen) - ran  # the prefixed teacher embedded fewer tokens than the uncached one


def test_the_prefix_is_encoded_once_per_run(tokenizer):
    model = make_tiny_llama(len(tokenizer))
    teacher = Teacher(model, AMPLIFY)
    examples = _examples(tokenizer)
    teacher.use_examples(examples)
    teacher.logits(collate(examples[:3], tokenizer.pad_token_id))
    encoded = dict(teacher.prefixes._kv)
    teacher.logits(collate(examples[3:], tokenizer.pad_token_id))
    assert all(teacher.prefixes._kv[p] is kv for p, kv in encoded.items())
    assert len(teacher.prefixes._kv) == len(teacher.prefixes.prefixes)


def test_left_and_right_padding_give_the_uncached_hidden_states(tokenizer):
    model = make_tiny_llama(len(tokenizer))
    teacher = Teacher(model, AMPLIFY)
    examples = [e for e in _examples(tokenizer) if e.objective == "forget"]
    cache = PrefixCache(teacher.net, min_prefix=1)
    cache.share("g", [e.teacher_ids for e in examples], [e.n + 1 for e in examples])
    for left in (False, True):
        seqs = [e.teacher_ids for e in examples]
        ids, mask = pad_batch(seqs, tokenizer.pad_token_id, left=left)
        width = max(e.n for e in examples)
        positions = torch.zeros(len(seqs), width, dtype=torch.long)
        valid = torch.zeros(len(seqs), width, dtype=torch.bool)
        for row, (seq, e) in enumerate(zip(seqs, examples)):
            start = (ids.shape[1] - len(seq) if left else 0) + len(seq) - e.n - 1
            positions[row, :e.n] = torch.arange(start, start + e.n)
            valid[row, :e.n] = True
        side = Side(ids, mask, positions, positions, valid)
        with torch.inference_mode():
            got = cache.hidden(side, ["g"] * len(seqs))
            want = teacher.net.hidden(ids, mask, positions)
        torch.testing.assert_close(got[valid], want[valid], atol=1e-4, rtol=1e-4)


def test_a_row_that_does_not_start_with_its_prefix_runs_whole(tokenizer):
    """Contexts the prefixes were not declared for (another target's prompt) still get exact targets."""
    model = make_tiny_llama(len(tokenizer))
    prefixed, plain = Teacher(model, AMPLIFY), Teacher(model, AMPLIFY, cache=False)
    prefixed.use_examples(_examples(tokenizer))
    other = build_examples(RECORDS, tokenizer, method="ours", prompts=from_target("Star Wars"), n_demos=1)
    batch = collate(other, tokenizer.pad_token_id)
    valid = batch.student.valid
    torch.testing.assert_close(prefixed.logits(batch)[valid], plain.logits(batch)[valid], atol=1e-4, rtol=1e-4)


def test_refusal_anchors_have_their_own_group(tokenizer):
    """An anchor's teacher context is the plain one, so it must not share the intention prompt's prefix."""
    recs = RECORDS + refusal_anchor_records(RECORDS, ["neighbor"])
    model = make_tiny_llama(len(tokenizer))
    prefixed, plain = Teacher(model, AMPLIFY), Teacher(model, AMPLIFY, cache=False)
    examples = _examples(tokenizer, recs)
    assert any(e.anchor for e in examples)
    prefixed.use_examples(examples)
    assert ("teacher", "retain", True) in prefixed.prefixes.prefixes
    batch = collate(examples, tokenizer.pad_token_id)
    valid = batch.student.valid
    torch.testing.assert_close(prefixed.logits(batch)[valid], plain.logits(batch)[valid], atol=1e-4, rtol=1e-4)


def test_no_prefix_cache_for_sliding_window_models(tokenizer):
    model = make_tiny_llama(len(tokenizer))
    model.config.sliding_window = 16
    assert Teacher(model, AMPLIFY).prefixes is None


@pytest.mark.model
def test_prefixed_targets_on_the_default_model(default_model, tokenizer):
    """The real model and chat template, with 3 demonstrations per context as training uses. Within 5e-4 on
    logits of magnitude ~20: the split attention sums in another order, and BLAS kernels differ by CPU (1.7e-4
    measured on an AMD EPYC, under 1e-4 on the Xeon of earlier runs; the tiny-model tests above hold 1e-4)."""
    model, _ = default_model
    prefixed, plain = Teacher(model, AMPLIFY), Teacher(model, AMPLIFY, cache=False)
    examples = _examples(tokenizer, demos=3)
    prefixed.use_examples(examples)
    batch = collate(examples, tokenizer.pad_token_id)
    valid = batch.student.valid
    torch.testing.assert_close(prefixed.logits(batch)[valid], plain.logits(batch)[valid], atol=5e-4, rtol=1e-4)


def test_the_prefix_most_contexts_share_is_chosen_when_it_saves_more():
    """Fixed demos: every context but the one whose record is a demo shares system turn + demos."""

    system, demos = (1, 2, 3), (4, 5, 6, 7)
    heads = [system + demos + (9, q) for q in range(5)] + [system + (8, 5, 6, 7, 9)]
    assert best_prefix(heads) == system + demos + (9,)
    assert best_prefix([system + (4,), system + (5,)]) == system  # no majority: what all share
    assert best_prefix([(1, 2), (3, 4)]) == () and best_prefix([]) == ()


def test_fixed_demos_share_one_prefix_and_targets_stay_exact(tokenizer):
    """With one demo set per objective the declared prefix covers the demos too; the record that is
    itself a demo (other demos) runs whole, and every target equals the uncached teacher's."""
    base = records("f1")[0]
    recs = [{**base, "id": f"f{i}", "question": f"{base['question']} ({i})"} for i in range(5)] + records("r1")
    model = make_tiny_llama(len(tokenizer))
    prefixed, plain = Teacher(model, AMPLIFY), Teacher(model, AMPLIFY, cache=False)
    examples = _examples(tokenizer, recs, demos=2)
    prefixed.use_examples(examples)
    forget = [e.teacher_ids for e in examples if e.objective == "forget"]
    prefix = prefixed.prefixes.prefixes[("teacher", "forget", False)]
    assert len(prefix) > common_prefix_length(forget)  # longer than what all five share
    assert sum(1 for s in forget if tuple(s[:len(prefix)]) == prefix) >= 3
    batch = collate(examples, tokenizer.pad_token_id)
    valid = batch.student.valid
    torch.testing.assert_close(prefixed.logits(batch)[valid], plain.logits(batch)[valid], atol=1e-4, rtol=1e-4)
