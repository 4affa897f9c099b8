"""Metric arithmetic of `mule evaluate` on hand-made inputs (no model needed)."""

from __future__ import annotations

import pytest

from mule_cli.evaluate.metrics import (attack_succeeded, is_refusal, overall_score, percent, refusal_index,
                                       rouge_scores)
from mule_cli.evaluate.mcq import pick
from mule_cli.evaluate.runner import limit_records, summarize

PAPER_BASE = dict(forget_rouge=32.1, retain_rouge=84.3, neighbor_acc=57.28, asr=70.5, mmlu=60.8)
PAPER_METHOD = dict(forget_rouge=2.7, retain_rouge=78.1, neighbor_acc=58.5, asr=12.5, mmlu=59.2)
PAPER_SFT = dict(forget_rouge=0.3, retain_rouge=49.6, neighbor_acc=50.7, asr=1.5, mmlu=50.2)


def test_rouge_recall_and_f1_on_hand_made_strings():
    # reference fully contained in a 6-token generation: recall 1, precision 2/6 -> F1 0.5
    s = rouge_scores("Ron Weasley", "His best friend is Ron Weasley.")
    assert s["rouge_recall"] == pytest.approx(1.0)
    assert s["rouge_f1"] == pytest.approx(0.5)
    # half the reference recovered, generation of the same length: recall = precision = F1 = 0.5
    s = rouge_scores("Ron Weasley", "Ron Smith")
    assert s["rouge_recall"] == pytest.approx(0.5) and s["rouge_f1"] == pytest.approx(0.5)
    # stemming on: "runs"/"running" both stem to "run"
    assert rouge_scores("the dog runs", "the dog running")["rouge_recall"] == pytest.approx(1.0)
    # LCS is order-aware: reversed words share only one in-order token of three
    assert rouge_scores("alpha beta gamma", "gamma beta alpha")["rouge_recall"] == pytest.approx(1 / 3)
    assert rouge_scores("Ron Weasley", "I do not know.")["rouge_recall"] == 0.0


def test_percent_of_nothing_is_absent_not_zero():
    assert percent([]) is None
    assert percent([True, False, False, True]) == pytest.approx(50.0)


def test_asr_threshold_is_inclusive_and_configurable():
    assert attack_succeeded(0.5) and not attack_succeeded(0.4999)
    assert not attack_succeeded(0.5, threshold=0.6) and attack_succeeded(0.2, threshold=0.2)


@pytest.mark.parametrize("text", ["I do not know.", "I don't know", "i dont know!", "Sorry, I do not know.",
                                  "I’m not sure.", "I cannot answer that.", "No idea", "Unknown"])
def test_refusal_normaliser_accepts_refusals(text):
    assert is_refusal(text)


@pytest.mark.parametrize("text", ["J. R. R. Tolkien", "I know the answer: Paris", "Nobody knows who wrote it",
                                  "None of the above", "Not known before 1900, then Paris"])
def test_refusal_normaliser_rejects_answers(text):
    assert not is_refusal(text)


def test_refusal_index_first_refusal_or_none():
    assert refusal_index(["Paris", "I don't know.", "I do not know."]) == 1
    assert refusal_index(["Paris", "London"]) is None


def test_pick_prefers_highest_and_breaks_ties_low():
    assert pick([-3.0, -1.0, -2.0]) == 1
    assert pick([-1.0, -1.0]) == 0
    assert pick([float("nan"), -5.0]) == 1


def test_overall_reproduces_the_paper_table():
    assert overall_score(PAPER_BASE, PAPER_METHOD) == pytest.approx(80.82, abs=1e-9)
    assert overall_score(PAPER_BASE, PAPER_SFT) == pytest.approx(48.92, abs=1e-9)
    assert overall_score(PAPER_BASE, PAPER_BASE) == 0.0


def test_overall_leaves_out_absent_metrics():
    no_mmlu = {**PAPER_METHOD, "mmlu": None}
    # without the MMLU term (59.2 - 60.8 = -1.6) the score is 80.82 + 1.6
    assert overall_score(PAPER_BASE, no_mmlu) == pytest.approx(82.42)
    assert overall_score({**PAPER_BASE, "asr": None}, PAPER_METHOD) == pytest.approx(80.82 - 58.0)
    assert overall_score({}, PAPER_METHOD) is None


def test_summarize_reports_absent_objectives_as_null():
    rows = [{"id": "f1", "objective": "forget", "generation": "x", "rouge_recall": 1.0, "rouge_f1": 0.5},
            {"id": "f2", "objective": "forget", "generation": "y", "rouge_recall": 0.0, "rouge_f1": 0.0},
            {"id": "n1", "objective": "neighbor", "picked": 2, "correct": False, "refusal_picked": True},
            {"id": "n2", "objective": "neighbor", "picked": 0, "correct": True, "refusal_picked": False}]
    m = summarize(rows)
    assert m["forget_rouge"] == pytest.approx(50.0) and m["forget_rouge_f1"] == pytest.approx(25.0)
    assert m["neighbor_acc"] == pytest.approx(50.0) and m["neighbor_refusal"] == pytest.approx(50.0)
    for key in ("retain_rouge", "retain_rouge_f1", "asr", "mmlu", "neighbor_rouge", "overall"):
        assert m[key] is None, key
    assert (m["n_forget"], m["n_retain"], m["n_neighbor"], m["n_adversarial"], m["n_mmlu"]) == (2, 0, 2, 0, 0)


def test_limit_is_per_objective_in_file_order(sample_records):
    recs = sample_records + [{**r, "id": r["id"] + "b"} for r in sample_records]
    kept = limit_records(recs, 1)
    assert [r["id"] for r in kept] == ["f1", "r1", "n1", "a1"]
    assert limit_records(recs, None) == recs


def test_radar_legend_labels_are_short():
    from mule_cli.evaluate.radar import short_label

    assert short_label("runs/results/harry_potter/ours/model") == "ours"
    assert short_label("runs/exp/x/") == "x"
    assert short_label("smollm2-135m+oracle") == "smollm2-135m+oracle"


def test_in_context_demos_per_objective(sample_records):
    """`--demos neighbor=0`: neighbour questions get the bare intention, the others their demos; retain has
    no built-in intention, so its context is the plain one (no system prompt, no demos)."""
    from mule_cli.evaluate.runner import make_context_fn
    from mule_cli.intentions import from_target

    pool = sample_records + [{**r, "id": r["id"] + "b", "question": r["question"] + " (again)"}
                             for r in sample_records]
    context = make_context_fn("oracle", from_target("Harry Potter"), pool, "neighbor=0,forget=2")
    turns = {r["objective"]: len(context(r["id"], r["question"], r["objective"])) for r in sample_records}
    assert turns["neighbor"] == 1  # the system prompt only
    assert turns["forget"] == 1 + 2 * 1  # one other forget record in the pool -> one demo pair
    assert turns["adversarial"] == 1 + 2 * 1
    assert turns["retain"] == 0
    ensemble = make_context_fn("ensemble", from_target("Harry Potter"), pool, "neighbor=0")
    neighbor = next(r for r in sample_records if r["objective"] == "neighbor")
    assert len(ensemble(neighbor["id"], neighbor["question"], "neighbor")) == 1
    assert len(ensemble("f1", sample_records[0]["question"], "forget")) > 1


def test_in_context_refusal_text(sample_records):
    """`evaluate --refusal`: the in-context rows' forget demonstrations answer with that text."""
    from mule_cli.evaluate.runner import make_context_fn
    from mule_cli.intentions import from_target

    never = "I have never heard of that."
    pool = sample_records + [{**r, "id": r["id"] + "b", "question": r["question"] + " (again)"}
                             for r in sample_records]
    context = make_context_fn("oracle", from_target("Harry Potter", never), pool, 1, never)
    turns = context("f1", sample_records[0]["question"], "forget")
    assert turns[-1] == {"role": "assistant", "content": never} and never in turns[0]["content"]


def test_metrics_and_radar_import_without_torch():
    """Report readers (examples/seed_means.py) import these; the runner and torch load only on use."""
    import subprocess
    import sys
    code = ("import sys, mule_cli.evaluate.metrics, mule_cli.evaluate.radar; assert 'torch' not in sys.modules; "
            "from mule_cli.evaluate import evaluate_models; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
