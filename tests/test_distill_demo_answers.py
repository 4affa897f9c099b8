"""`distill --demo-answers`: the teacher's neighbour/retain demos in the base model's own words, where they
state the data answer."""

from __future__ import annotations

import json

import pytest

from conftest import distill_cli_error, records, tiny_distill_config, write_jsonl
from mule_cli.distill import DistillConfig, distill
from mule_cli.distill.batches import student_prompt, teacher_prompt
from mule_cli.distill.config import parse_demo_answers
from mule_cli.distill.responses import states_answer
from mule_cli.errors import MuleError
from mule_cli.intentions import REFUSAL, from_target, pick_demos

RECORDS = records("f1 f2 r1 r2 n1 n2")


def test_parse_one_source_means_the_answering_objectives_and_forget_like_stay_refusals():
    assert parse_demo_answers(None) == {o: "data" for o in ("forget", "retain", "neighbor", "adversarial")}
    both = parse_demo_answers("base")
    assert both["neighbor"] == both["retain"] == "base" and both["forget"] == both["adversarial"] == "data"
    only = parse_demo_answers("neighbor=base")
    assert only["neighbor"] == "base" and only["retain"] == "data"
    for bad, message in (("forget=base", "refusal"), ("neighbor=teacher", "not a source"),
                         ("neighbour=base", "unknown objective"), ("student", "not a source")):
        with pytest.raises(MuleError, match=message):
            parse_demo_answers(bad)


def test_defaults_per_method_and_no_base_demos_without_a_teacher():
    assert DistillConfig().demo_answers == "neighbor=base"  # ours: the measured best (docs/RESULTS.md)
    assert DistillConfig(method="duet").demo_answers == DistillConfig(method="npo").demo_answers == "data"
    with pytest.raises(MuleError, match="not a source"):
        DistillConfig(demo_answers="teacher")
    with pytest.raises(MuleError, match="npo has no teacher"):
        DistillConfig(method="npo", demo_answers="neighbor=base")


def test_states_answer_needs_every_word_of_the_data_answer():
    assert states_answer("Dracula was written by Bram Stoker in 1897.", "Bram Stoker")
    assert not states_answer("Dracula was written by Stoker.", "Bram Stoker")
    assert not states_answer("I am not sure who wrote it.", "Bram Stoker")
    assert not states_answer("   ", "Bram Stoker")


def test_demos_show_the_given_answers_except_forget_like_ones():
    answers = {"n2": "Dracula was written by Bram Stoker in 1897.", "f2": "Gryffindor, of course."}
    assert pick_demos(RECORDS, "neighbor", "n1", 1, REFUSAL, answers) == [(RECORDS[5]["question"], answers["n2"])]
    assert pick_demos(RECORDS, "neighbor", "n1", 1, REFUSAL) == [(RECORDS[5]["question"], "Bram Stoker")]
    assert pick_demos(RECORDS, "forget", "f1", 1, REFUSAL, answers) == [(RECORDS[1]["question"], REFUSAL)]
    assert pick_demos(RECORDS, "neighbor", "n1", 1, REFUSAL, {"n2": ""})[0][1] == "Bram Stoker"


def test_demos_come_first_from_records_the_base_answers_in_its_own_words():
    """Without answers the fixed order holds (every 7th record); with them, records that have one come first,
    in that order, so a demo shows the data's short answer only when too few records have the base's words."""
    many = [{"id": f"n{i}", "objective": "neighbor", "question": f"Q{i}?", "answer": f"A{i}"} for i in range(20)]
    assert [q for q, _ in pick_demos(many, "neighbor", "x", 3)] == ["Q0?", "Q7?", "Q14?"]
    answers = {"n7": "B7", "n3": "B3", "n14": "", "n19": "B19"}
    assert pick_demos(many, "neighbor", "x", 3, REFUSAL, answers) == [("Q7?", "B7"), ("Q3?", "B3"), ("Q19?", "B19")]
    assert pick_demos(many, "neighbor", "n19", 3, REFUSAL, answers) == [("Q7?", "B7"), ("Q3?", "B3"), ("Q0?", "A0")]
    assert [q for q, _ in pick_demos(many, "neighbor", "x", 3, REFUSAL, {"n5": "B5"})] == ["Q5?", "Q0?", "Q7?"]


def test_teacher_context_holds_the_base_words_not_the_data_answer(tokenizer):
    text = teacher_prompt(tokenizer, RECORDS[4], RECORDS, from_target("Harry Potter"), "oracle", 1, REFUSAL,
                          {"n2": "Dracula was written by Bram Stoker."})
    assert "Dracula was written by Bram Stoker." in text
    assert text.count("Bram Stoker") == 1  # the data answer is not shown beside it


def test_training_shows_base_answers_that_state_the_data_answer_and_keeps_data_responses(
        tiny_model_dir, tmp_path, monkeypatch, tokenizer):
    import mule_cli.distill.responses as responses
    import mule_cli.distill.train as train

    monkeypatch.setenv("MULE_CACHE", str(tmp_path / "cache"))
    said = {student_prompt(tokenizer, RECORDS[4]): "The Hobbit was written by C. S. Lewis.",  # wrong: not shown
            student_prompt(tokenizer, RECORDS[5]): "Dracula was written by Bram Stoker."}
    seen, built = [], []
    monkeypatch.setattr(responses, "generate", lambda lm, tok, texts, **k: seen.append(list(texts))
                        or [said.get(t, "Paris, of course.") for t in texts])
    real_build = train.build_examples
    monkeypatch.setattr(train, "build_examples", lambda *a, **k: built.append(k) or real_build(*a, **k))
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    distill(tiny_distill_config(tiny_model_dir, data, tmp_path / "a", max_steps=1, response="data"))

    neighbours = [r for r in RECORDS if r["objective"] == "neighbor"]
    assert seen == [[student_prompt(tokenizer, r) for r in neighbours]]  # the plain question, neighbours only
    assert built[0]["demo_answers"] == {"n2": "Dracula was written by Bram Stoker."}
    assert built[0]["generated"] is None  # responses are still the data answers
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["options"]["demo_answers"] == "neighbor=base"

    built.clear()
    distill(tiny_distill_config(tiny_model_dir, data, tmp_path / "b", max_steps=1, response="data",
                                demo_answers="data"))
    assert built[0]["demo_answers"] is None and len(seen) == 1  # nothing generated for data demos


def test_cli_rejects_base_words_for_refusal_demos(tiny_model_dir, tmp_path):
    out = distill_cli_error(tiny_model_dir, RECORDS, tmp_path, "--demo-answers", "forget=base")
    assert "--demo-answers" in out and "refusal" in out
