"""`--refusal-anchors`: neighbour/retain copies forced on the refusal, distilled from the plain frozen model."""

from __future__ import annotations

import json

import pytest

from conftest import records, tiny_distill_config, write_jsonl
from mule_cli.distill import distill
from mule_cli.distill.batches import build_examples, student_prompt, teacher_prompt
from mule_cli.distill.refusal_anchors import is_anchor, parse_objectives, refusal_anchor_records
from mule_cli.errors import MuleError
from mule_cli.intentions import REFUSAL, from_target

RECORDS = records("f1 r1 r2 n1 a1 n2", n1={"anchor_of": "f1"},
                  n2={"question": "Who wrote Dune?", "answer": "Frank Herbert", "prefill": "Sure:"})



def _config(model_dir, data_file, out, **kw):
    return tiny_distill_config(model_dir, data_file, out,
                               **{"batch_size": 4, "max_steps": 1, "refusal_anchors": "neighbor,retain", **kw})


def test_one_retain_copy_per_unprefilled_neighbour_or_retain_record():
    anchors = refusal_anchor_records(RECORDS, ("neighbor", "retain"))
    assert [a["refusal_anchor"] for a in anchors] == ["r1", "r2", "n1"]  # n2 has a prefill
    assert all(a["objective"] == "retain" and a["answer"] == REFUSAL and a["anchor_of"] == a["refusal_anchor"]
               for a in anchors)
    assert len({a["id"] for a in anchors} | {r["id"] for r in RECORDS}) == len(anchors) + len(RECORDS)
    assert [a["refusal_anchor"] for a in refusal_anchor_records(RECORDS, ("neighbor",))] == ["n1"]
    again = refusal_anchor_records(RECORDS + anchors, ("retain",))  # anchors themselves are not re-anchored
    assert [a["refusal_anchor"] for a in again] == ["r1", "r2"] and not {a["id"] for a in again} & {a["id"] for a in anchors}


def test_anchor_objectives_are_parsed_and_checked():
    assert parse_objectives("neighbor, retain") == ("neighbor", "retain")
    assert parse_objectives("") == parse_objectives(None) == parse_objectives("none") == ()
    with pytest.raises(MuleError, match="forget cannot be anchored"):
        parse_objectives("forget")
    with pytest.raises(MuleError, match="objectives: forget"):
        parse_objectives("neighbour")


def test_anchor_teacher_is_the_plain_model_and_anchors_are_never_demos(tokenizer):
    prompts = from_target("Harry Potter")  # a prompted retain teacher: anchors must ignore it
    records = RECORDS + refusal_anchor_records(RECORDS, ("neighbor", "retain"))
    anchor = next(r for r in records if is_anchor(r))
    assert teacher_prompt(tokenizer, anchor, records, prompts, "oracle", 3) == student_prompt(tokenizer, anchor)
    for rec in records:
        if rec["objective"] == "retain" and not is_anchor(rec):
            assert REFUSAL not in teacher_prompt(tokenizer, rec, records, prompts, "oracle", 3)
    generated = {r["id"]: "a generated answer" for r in records}  # --response base must not reach anchors
    examples = build_examples(records, tokenizer, method="ours", prompts=prompts, n_demos=3, generated=generated)
    for rec, ex in zip(records, examples):
        if is_anchor(rec):
            want = tokenizer(REFUSAL, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            assert ex.response_ids == want and ex.teacher_ids == ex.student_ids


def test_anchor_loss_is_zero_before_training_and_run_json_counts_them(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [r for r in RECORDS if r["objective"] == "neighbor"] + [RECORDS[0]])
    rows = []
    distill(_config(tiny_model_dir, data, tmp_path / "o", weights="forget=0", batch_size=8),
            on_step=lambda step, row: rows.append(row))
    assert rows[0]["loss_retain"] == pytest.approx(0.0, abs=1e-8)  # plain teacher = the student at step 0
    assert rows[0]["loss_neighbor"] > 0
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["refusal_anchors"] == 1 and run["options"]["refusal_anchors"] == "neighbor,retain"


def test_anchors_hold_the_refusal_likelihood_on_anchored_questions(tiny_model_dir, tmp_path, tokenizer, monkeypatch):
    """Train only a forget record whose teacher is pushed towards refusing; with an anchor on the neighbour
    question, the student's refusal log-likelihood there must move less from the base's."""
    from transformers import AutoModelForCausalLM

    from mule_cli.lm import chat_prompt, continuation_logprobs

    monkeypatch.setenv("MULE_CACHE", str(tmp_path / "cache"))  # the teacher-answer cache stays out of the user's
    recs = [dict(RECORDS[0], answer=REFUSAL), RECORDS[3]]
    data = write_jsonl(tmp_path / "d.jsonl", recs)

    def refusal_lp(folder):
        lm = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
        return continuation_logprobs(lm, tokenizer, [chat_prompt(tokenizer, RECORDS[3]["question"])], [REFUSAL])[0]

    base = refusal_lp(tiny_model_dir)
    moved = {}
    for name, anchors in (("plain", ""), ("anchored", "neighbor")):
        distill(_config(tiny_model_dir, data, tmp_path / name, refusal_anchors=anchors, weights="neighbor=0",
                        response="forget=teacher", amplify=4.0, max_steps=8, lr=3e-3, batch_size=2),
                )
        moved[name] = abs(refusal_lp(tmp_path / name / "model") - base)
    assert moved["plain"] > 0.05, moved  # the forget side does move it
    assert moved["anchored"] < 0.5 * moved["plain"], moved


def test_anchors_need_a_distillation_method_and_a_retain_weight(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    with pytest.raises(MuleError, match="distillation method"):
        distill(_config(tiny_model_dir, data, tmp_path / "g", method="graddiff"))
    with pytest.raises(MuleError, match="retain weight is 0"):
        distill(_config(tiny_model_dir, data, tmp_path / "w", weights="retain=0"))
    with pytest.raises(MuleError, match="--refusal-anchors"):
        _config(tiny_model_dir, data, tmp_path / "x", refusal_anchors="adversarial")
