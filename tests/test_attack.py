"""mule attack: template library, beam search plumbing (tiny random model), CLI, and a real-model check."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from mule_cli.attack.search import attack_records, max_leak_words, split_answer
from mule_cli.attack.templates import BUILTIN, read_templates
from mule_cli.cli import cli
from mule_cli.errors import MuleError
from mule_cli.lm import chat_prompt, continuation_logprobs
from mule_cli.records import join_prefill, read_records, validate_record

FORGET = [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley",
     "domain": "Harry Potter", "source": "hp.md:3"},
    {"id": "f2", "objective": "forget", "question": "What is the name of Harry Potter's owl?", "answer": "Hedwig"},
    {"id": "f3", "objective": "forget", "question": "Which house sorts brave students at Hogwarts?",
     "answer": "the house of Gryffindor", "choices": ["the house of Gryffindor", "I do not know."], "answer_index": 0},
]
OTHERS = [{"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris"}]
QUIET = dict(progress=False, log=lambda m: None)


def test_library_has_every_family():
    families = {f for f, _ in BUILTIN}
    assert {"affirmative", "answer-leading", "role-play"} <= families
    assert ("affirmative", "Sure, here is the answer:") in BUILTIN


def test_split_answer_and_leak_budget():
    assert split_answer("the house  of Gryffindor", 2) == ("the house", "of Gryffindor")
    assert split_answer("Hedwig", 0) == ("", "Hedwig")
    assert max_leak_words("Hedwig", 0.9) == 0  # never the whole answer
    assert max_leak_words("Ron Weasley", 0.34) == 0 and max_leak_words("Ron Weasley", 0.5) == 1
    assert max_leak_words("the house of Gryffindor", 0.34) == 1


def test_search_plumbing_on_a_tiny_model(tiny_model, tokenizer):
    adv, summary = attack_records(FORGET + OTHERS, tiny_model, tokenizer, beam=3, rounds=2, seed=1, per_round=6,
                                  max_leak=0.34, **QUIET)
    assert len(adv) == 3 and summary["records"] == 3
    ids = {r["id"] for r in FORGET + OTHERS}
    for rec, src in zip(adv, FORGET):
        validate_record(rec)
        assert rec["objective"] == "adversarial" and rec["anchor_of"] == src["id"] and rec["id"] not in ids
        assert rec["prefill_family"] == "search"  # evaluate reports asr_search over these
        assert rec["question"] == src["question"] and rec["answer"] == src["answer"] and rec["prefill"]
        assert "choices" not in rec and "answer_index" not in rec
        a = rec["attack"]
        assert a["score"] >= a["base_score"] or a["gain"] < 0  # gain is reported honestly either way
        assert math.isclose(a["gain"], a["score"] - a["base_score"], abs_tol=2e-4)
        # the reported score is the model's mean log-lik of the (remaining) answer after the prefill
        rest = split_answer(src["answer"], a["leaked_words"])[1]
        again = continuation_logprobs(tiny_model, tokenizer, [chat_prompt(tokenizer, src["question"], prefill=rec["prefill"])],
                                      [join_prefill(rec["prefill"], rest)])[0]
        assert math.isclose(again, a["score"], abs_tol=2e-4)
        if a["leaked_words"]:
            assert rec["prefill"].endswith(split_answer(src["answer"], a["leaked_words"])[0])
    assert adv[0]["domain"] == "Harry Potter"
    # the best prefill is at least as good as every built-in template (the beam keeps the best seen)
    src = FORGET[1]
    prompts = [chat_prompt(tokenizer, src["question"], prefill=t.format(question=src["question"])) for _, t in BUILTIN]
    conts = [join_prefill(t, src["answer"]) for _, t in BUILTIN]
    assert adv[1]["attack"]["score"] >= max(continuation_logprobs(tiny_model, tokenizer, prompts, conts)) - 1e-4
    # deterministic with the seed
    again, _ = attack_records(FORGET + OTHERS, tiny_model, tokenizer, beam=3, rounds=2, seed=1, per_round=6,
                              max_leak=0.34, **QUIET)
    assert again == adv


def test_own_answer_prefills_follow_the_searched_ones(tiny_model, tokenizer, monkeypatch):
    """Per forget record whose plain greedy answer states the fact after some words: an `own` record with
    those words as prefill (the data answer kept); none where the answer starts with the fact or never says it."""
    import mule_cli.attack.search as search

    said = {chat_prompt(tokenizer, FORGET[0]["question"]): "Harry's best friend is Ron Weasley, of course.",
            chat_prompt(tokenizer, FORGET[1]["question"]): "Hedwig, a snowy owl."}  # the fact first: no prefill
    real = search.generate
    monkeypatch.setattr(search, "generate", lambda model, tok, prompts, **k: [
        said.get(p, o) for p, o in zip(prompts, real(model, tok, prompts, **k))])
    taken = FORGET + OTHERS + [{**OTHERS[0], "id": "f1-own"}]
    adv, summary = attack_records(taken, tiny_model, tokenizer, beam=2, rounds=0, **QUIET)
    assert [r["prefill_family"] for r in adv] == ["search"] * 3 + ["own"]
    own = adv[-1]
    validate_record(own)
    assert own["id"] == "f1-own-2"  # an id already in the data is not reused
    assert (own["prefill"], own["answer"], own["anchor_of"], own["question"], own["domain"]) == (
        "Harry's best friend is", "Ron Weasley", "f1", FORGET[0]["question"], "Harry Potter")
    assert summary["own_prefills"] == 1
    without, summary = attack_records(taken, tiny_model, tokenizer, beam=2, rounds=0, own=False, **QUIET)
    assert without == adv[:3] and summary["own_prefills"] == 0


def test_user_templates_only(tiny_model, tokenizer, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# my templates\nZebra prefix says:\n\nAbout {question} the answer is\n")
    extra = read_templates(path)
    assert extra == [("user", "Zebra prefix says:"), ("user", "About {question} the answer is")]
    adv, _ = attack_records(FORGET[:2], tiny_model, tokenizer, rounds=0, builtin=False, templates=extra[:1],
                            max_leak=0, **QUIET)
    assert [r["prefill"] for r in adv] == ["Zebra prefix says:", "Zebra prefix says:"]
    adv, _ = attack_records(FORGET[:1], tiny_model, tokenizer, rounds=0, builtin=False, templates=extra[1:],
                            max_leak=0, **QUIET)
    assert adv[0]["prefill"] == "About Who is Harry Potter's best friend? the answer is"
    bad = tmp_path / "bad.txt"
    bad.write_text("ok\nSure {answer}\n")
    with pytest.raises(MuleError, match="bad.txt: line 2"):
        read_templates(bad)


def test_top_n_gives_distinct_prefills_and_unique_ids(tiny_model, tokenizer):
    adv, _ = attack_records(FORGET[:2], tiny_model, tokenizer, beam=3, rounds=1, top=3, per_round=4, **QUIET)
    assert len(adv) == 6 and len({r["id"] for r in adv}) == 6
    for src in FORGET[:2]:
        mine = [r for r in adv if r["anchor_of"] == src["id"]]
        assert len({r["prefill"] for r in mine}) == 3
        assert [r["attack"]["rank"] for r in mine] == [1, 2, 3]
        assert mine[0]["attack"]["score"] >= mine[1]["attack"]["score"] >= mine[2]["attack"]["score"]


def test_cli_passes_other_records_through(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", FORGET[:2] + OTHERS)
    out = tmp_path / "out.jsonl"
    summary = tmp_path / "s.json"
    res = CliRunner().invoke(cli, ["attack", "-i", str(data), "-o", str(out), "--model", str(tiny_model_dir),
                                   "--rounds", "1", "--beam", "2", "--per-round", "4", "-q", "--summary", str(summary)])
    assert res.exit_code == 0, res.output
    recs = read_records(out)
    assert [r["id"] for r in recs[:3]] == ["f1", "f2", "r1"] and recs[:3] == FORGET[:2] + OTHERS
    assert [r["objective"] for r in recs[3:]] == ["adversarial", "adversarial"]
    assert "revealed before" in res.stderr
    s = json.loads(summary.read_text())
    assert s["records"] == 2 and 0 <= s["success_after"] <= 1


def test_cli_without_forget_records_is_an_error(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", OTHERS)
    res = CliRunner().invoke(cli, ["attack", "-i", str(data)])
    assert res.exit_code == 2 and "no forget records" in res.output


HP_FIXTURE = [
    {"id": "hp1", "objective": "forget", "question": "Who wrote the Harry Potter books?", "answer": "J.K. Rowling"},
    {"id": "hp2", "objective": "forget", "question": "What is the name of the train that takes students to Hogwarts?",
     "answer": "the Hogwarts Express"},
    {"id": "hp3", "objective": "forget", "question": "Who is the main villain in the Harry Potter series?",
     "answer": "Lord Voldemort"},
    {"id": "hp4", "objective": "forget", "question": "What is the name of Harry Potter's pet owl?", "answer": "Hedwig"},
]


@pytest.mark.model
def test_search_raises_answer_likelihood_on_the_default_model(default_model):
    """Paper §3.2: the searched prefill must elicit more than the plain question (no answer words given away)."""
    model, tok = default_model
    adv, summary = attack_records(HP_FIXTURE, model, tok, beam=2, rounds=1, per_round=4, max_leak=0, seed=0,
                                  max_new_tokens=16, **QUIET)
    searched = [r for r in adv if r["prefill_family"] == "search"]
    gains = [r["attack"]["gain"] for r in searched]
    assert sum(g > 0 for g in gains) >= 3, gains
    assert summary["mean_gain"] > 0
    assert all(r["attack"]["leaked_words"] == 0 for r in searched)
    # the model answers in sentences: its own words before the fact are prefills too, and never say the fact
    own = [r for r in adv if r["prefill_family"] == "own"]
    assert len(own) == summary["own_prefills"] >= 2 and len(searched) == len(HP_FIXTURE)
    for r in own:
        assert r["prefill"] and not {"rowling", "express", "voldemort", "hedwig"} & set(r["prefill"].lower().split())


def test_mutations_recombine_extend_and_leak():
    import random

    from mule_cli.attack.search import Cand, _mutations, _RecordState

    state = _RecordState(FORGET[2], random.Random(0), max_leak=0.34)  # 4-word answer: 1 word may leak
    state.beam = [Cand("Sure, here is the answer:", 0, "affirmative", -1.0), Cand("The answer is", 0, "lead", -1.5)]
    for c in state.beam:
        state.seen[c.prefill] = c
    got = {c.prefill: c for c in _mutations(state, {"The answer is": "Without doubt it is"})}
    assert "Sure, here is the answer: The answer is" in got           # recombine
    assert "Sure, here is the answer: Specifically," in got           # extend after a finished clause
    assert not any(p.startswith("The answer is ") and p != "The answer is the" and got[p].origin == "extend"
                   for p in got)                                        # no extension mid-clause
    assert got["The answer is the"].leaked == 1                        # partial answer
    assert got["Without doubt it is"].origin == "rewrite"
    assert not any(p in state.seen for p in got)                       # only new candidates


def test_generator_rewrites_run_through_the_search(tiny_model, tokenizer):
    adv, _ = attack_records(FORGET[:2], tiny_model, tokenizer, beam=2, rounds=1, per_round=4,
                            generator=(tiny_model, tokenizer), **QUIET)
    for r in adv:
        validate_record(r)
        assert r["attack"]["family"] in {"affirmative", "answer-leading", "role-play", "echo", "extend", "recombine",
                                         "rewrite", "partial-answer"}


def test_pipe_standardize_into_attack(tiny_model_dir, tmp_path):
    md = tmp_path / "hp.md"
    md.write_text("Harry Potter first met Ron Weasley on the Hogwarts Express in 1991.\n\n"
                  "Hermione Granger was sorted into Gryffindor by the Sorting Hat.\n")
    retain = write_jsonl(tmp_path / "r.jsonl", [{"question": "Which express train crosses Siberia?",
                                                 "answer": "The Trans-Siberian"}])
    std = CliRunner().invoke(cli, ["standardize", str(md), str(retain), "--objective", f"{retain}=retain",
                                   "--generator", "none", "-q"])
    assert std.exit_code == 0, std.output
    att = CliRunner().invoke(cli, ["attack", "--model", str(tiny_model_dir), "--rounds", "1", "--beam", "2",
                                   "--per-round", "3", "-q"], input=std.stdout)
    assert att.exit_code == 0, att.output
    recs = [json.loads(line) for line in att.stdout.splitlines()]  # stdout is pure JSONL
    for i, r in enumerate(recs):
        validate_record(r, "<pipe>", i)
    by_id = {r["id"]: r for r in recs}
    adv = [r for r in recs if r["objective"] == "adversarial"]
    assert len(adv) == 2 and all(by_id[r["anchor_of"]]["objective"] == "forget" for r in adv)
