"""`distill --own-prefills`: adversarial copies of forget records prefilled with the base's own answer."""

from __future__ import annotations

import json

import pytest

from conftest import distill_cli_error, tiny_distill_config, write_jsonl
from mule_cli.attack.own_answer import fact_span, own_answer_prefill
from mule_cli.distill import DistillConfig, distill
from mule_cli.distill.batches import student_prompt
from mule_cli.distill.own_prefills import KEY, own_prefill_records
from mule_cli.errors import MuleError


@pytest.mark.parametrize("generation, answer, question, want", [
    ("The Harry Potter books are written by J.K. Rowling. She is British.", "J.K. Rowling",
     "Who wrote the Harry Potter books?", ("The Harry Potter books are written by", "J.K. Rowling")),
    # an answer word the question already has ("Hogwarts") is an echo until a new one ("Express") comes
    ("The train that takes students to Hogwarts is called the Hogwarts Express.", "the Hogwarts Express",
     "What is the name of the train that takes students to Hogwarts?",
     ("The train that takes students to Hogwarts is called", "the Hogwarts Express")),
    ("Harry Potter goes to Hogwarts School of Witchcraft.", "Hogwarts", "Which school?", ("Harry Potter goes to", "Hogwarts")),
    ("hogwarts, of course.", "Hogwarts", "Which school?", None),  # the fact first: no prefill
    ("I am not sure about that.", "Hogwarts", "Which school?", None),  # never stated
    ("The school is Hogwarts.", "Hogwarts", "Is it Hogwarts?", None),  # nothing the question lacks
    ("It is the best of all.", "of the", "Which?", None),  # only filler words
])
def test_own_answer_prefill_cuts_right_before_the_fact(generation, answer, question, want):
    assert own_answer_prefill(generation, answer, question) == want


def test_fact_span_is_case_insensitive_and_widens_over_answer_words():
    gen = "Led by LORD voldemort himself."
    start, end = fact_span(gen, "Lord Voldemort", "Who leads them?")
    assert gen[start:end] == "LORD voldemort"


RECORDS = [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
    {"id": "f2", "objective": "forget", "question": "Which house is Harry Potter in?", "answer": "Gryffindor"},
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien"},
    {"id": "a1", "objective": "adversarial", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley",
     "prefill": "Sure, here is the answer:", "anchor_of": "f1"},
]


def test_records_copy_forget_records_whose_answer_states_the_fact_later():
    answers = {"f1": "Harry Potter's best friend is Ron Weasley, a loyal boy.", "f2": "I am not sure.",
               "r1": "The capital of France is Paris."}
    out = own_prefill_records(RECORDS, answers)
    assert out == [{"id": "f1~own", "objective": "adversarial", "question": RECORDS[0]["question"],
                    "answer": "Ron Weasley", "prefill": "Harry Potter's best friend is", "anchor_of": "f1",
                    "source": "own-answer prefill", KEY: "f1"}]
    taken = own_prefill_records(RECORDS + [{**RECORDS[2], "id": "f1~own"}], answers)
    assert taken[0]["id"] == "f1~own~"  # ids stay unique


def test_training_adds_the_copies_from_the_base_greedy_answers(tiny_model_dir, tmp_path, monkeypatch, tokenizer):
    import mule_cli.distill.responses as responses
    import mule_cli.distill.train as train

    monkeypatch.setenv("MULE_CACHE", str(tmp_path / "cache"))
    fake = {"f1": "Harry Potter's best friend is Ron Weasley.", "f2": "Gryffindor."}
    seen, built = [], []
    forget = [r for r in RECORDS if r["objective"] == "forget"]
    by_prompt = {student_prompt(tokenizer, r): fake[r["id"]] for r in forget}
    monkeypatch.setattr(responses, "generate", lambda lm, tok, texts, **k: seen.append(list(texts))
                        or [by_prompt[t] for t in texts])
    real_build = train.build_examples
    monkeypatch.setattr(train, "build_examples", lambda recs, *a, **k: built.append(list(recs)) or real_build(recs, *a, **k))
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    distill(tiny_distill_config(tiny_model_dir, data, tmp_path / "a", own_prefills=True, max_steps=1))
    assert seen == [[student_prompt(tokenizer, r) for r in forget]]  # the plain question, forget records only
    added = [r for r in built[0] if r.get(KEY)]
    assert [(r["prefill"], r["answer"]) for r in added] == [("Harry Potter's best friend is", "Ron Weasley")]
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["own_prefills"] == 1 and run["options"]["own_prefills"] is True


def test_own_prefills_need_a_distillation_method_and_the_adversarial_objective(tiny_model_dir, tmp_path):
    with pytest.raises(MuleError, match="distillation method"):
        DistillConfig(model="m", data=["d"], output="o", method="npo", own_prefills=True)
    with pytest.raises(MuleError, match="adversarial weight is 0"):
        DistillConfig(model="m", data=["d"], output="o", own_prefills=True, weights="adversarial=0")
    out = distill_cli_error(tiny_model_dir, RECORDS, tmp_path, "--own-prefills", "--method", "sft")
    assert "--own-prefills" in out
