"""mule standardize with models: generator parsing/checking, neighbours and --known-by plumbing.

Canned generator outputs test the parsing and filtering logic exactly; a tiny random model tests that
the real generate path runs end to end (its output is noise, so the cloze fallback must take over).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import mule_cli.standardize.generate as gen_mod
import mule_cli.standardize.known as known_mod
from conftest import write_jsonl
from mule_cli.cli import cli
from mule_cli.errors import MuleError
from mule_cli.records import read_records, validate_record
from mule_cli.standardize.generate import clean_pair, parse_qa
from mule_cli.standardize.pipeline import standardize

PASSAGE = ("Harry Potter first met Ron Weasley on the Hogwarts Express in 1991. The train leaves from platform "
           "nine and three-quarters at King's Cross station.")
QUIET = dict(progress=False, log=lambda m: None)


def test_parse_qa_formats():
    text = ("Q: Who did Harry meet on the train?\nA: Ron Weasley\n"
            "Question 2: Where does the train leave from?\nAnswer: King's Cross station\n"
            "3. Q: In which year? A: 1991\nnoise line\nA: orphan answer")
    assert parse_qa(text) == [("Who did Harry meet on the train?", "Ron Weasley"),
                              ("Where does the train leave from?", "King's Cross station"),
                              ("In which year?", "1991")]
    assert clean_pair("Who met Ron Weasley", "Ron Weasley") is None  # answer given away by the question
    assert clean_pair("Who met Ron on the train", "Harry Potter.") == ("Who met Ron on the train?", "Harry Potter")


def test_generated_pairs_are_checked_against_the_passage_and_deduped(monkeypatch, tiny_model, tokenizer, tmp_path):
    canned = ("Q: Who did Harry meet on the train?\nA: Ron Weasley\n"
              "Q: who did Harry meet on the train\nA: Ron Weasley\n"      # duplicate question
              "Q: What colour is the train?\nA: Bright purple\n")         # not in the passage
    monkeypatch.setattr(gen_mod, "generate", lambda model, tok, prompts, **kw: [canned] * len(prompts))
    md = tmp_path / "p.md"
    md.write_text("# Title\n\n" + PASSAGE + "\n")
    res = standardize([str(md)], generator=(tiny_model, tokenizer), **QUIET)
    recs = res.train
    assert [(r["question"], r["answer"]) for r in recs] == [("Who did Harry meet on the train?", "Ron Weasley")]
    assert recs[0]["source"] == f"{md}:3" and recs[0]["objective"] == "forget"
    assert res.stats["passages"]["generated"] == 1 and res.stats["passages"]["cloze"] == 0


def test_neighbors_from_the_generator(monkeypatch, tiny_model, tokenizer, tmp_path):
    def fake(model, tok, prompts, **kw):
        if "NOT part of" in prompts[0]:
            return ["1. Harry Potter films\n2. The Hobbit\n3. Norse mythology\n4. The Hobbit"] * len(prompts)
        return ["Q: Who wrote it?\nA: Someone Famous\nQ: When was it written?\nA: Long ago"] * len(prompts)

    monkeypatch.setattr(gen_mod, "generate", fake)
    f = write_jsonl(tmp_path / "f.jsonl", [{"question": "Who wrote Harry Potter?", "answer": "J. K. Rowling"}])
    recs = standardize([str(f)], generator=(tiny_model, tokenizer), target="Harry Potter", neighbors=2,
                       neighbor_qa=2, mcq=True, **QUIET).train
    nbr = [r for r in recs if r["objective"] == "neighbor"]
    assert [r["domain"] for r in nbr] == ["The Hobbit", "The Hobbit", "Norse mythology", "Norse mythology"]
    assert all("Harry" not in r["domain"] for r in nbr)  # the target itself is not a neighbour
    assert nbr[0]["question"] == "Regarding The Hobbit, who wrote it?"
    for r in recs:
        validate_record(r)
    forget = next(r for r in recs if r["objective"] == "forget")
    assert forget["anchor_of"] in {r["id"] for r in nbr}


def test_tiny_model_generator_runs_and_falls_back_to_cloze(tiny_model_dir, tmp_path):
    md = tmp_path / "p.md"
    md.write_text(PASSAGE + "\n")
    out = tmp_path / "o.jsonl"
    res = CliRunner().invoke(cli, ["standardize", str(md), "--generator", str(tiny_model_dir), "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output
    recs = read_records(out)
    assert recs and all(r["generator"] in ("cloze", str(tiny_model_dir)) for r in recs)
    res = CliRunner().invoke(cli, ["standardize", str(md), "--generator", str(tmp_path / "missing"), "-q"])
    assert res.exit_code == 2 and "not found" in res.output


def test_known_by_keeps_answered_records_and_reports(monkeypatch, tiny_model, tokenizer, tmp_path):
    rows = [{"id": "f1", "objective": "forget", "question": "Who wrote Harry Potter?", "answer": "J. K. Rowling"},
            {"id": "f2", "objective": "forget", "question": "Name Harry's owl?", "answer": "Hedwig"},
            {"id": "r1", "objective": "retain", "question": "Capital of France?", "answer": "Paris"},
            {"id": "a1", "objective": "adversarial", "question": "Name Harry's owl?", "answer": "Hedwig",
             "prefill": "Sure,", "anchor_of": "f2"}]
    answers = {"Who wrote Harry Potter?": "It was written by J. K. Rowling.", "Capital of France?": "Paris.",
               "Name Harry's owl?": "I am not sure."}

    def fake(model, tok, prompts, **kw):
        return [next(v for k, v in answers.items() if k in p) for p in prompts]

    monkeypatch.setattr(known_mod, "generate", fake)
    logs = []
    f = write_jsonl(tmp_path / "f.jsonl", rows)
    res = standardize([str(f)], known_by=(tiny_model, tokenizer), progress=False, log=logs.append)
    assert [r["id"] for r in res.train] == ["f1", "r1", "a1"]
    assert res.stats["known_by"] == {"forget": {"kept": 1, "dropped": 1}, "retain": {"kept": 1, "dropped": 0}}
    assert any("forget: kept 1, dropped 1" in m for m in logs)


def test_known_by_on_a_random_model_drops_everything(tiny_model, tokenizer, tmp_path):
    f = write_jsonl(tmp_path / "f.jsonl", [{"question": "Who wrote Harry Potter?", "answer": "J. K. Rowling"}])
    with pytest.raises(MuleError, match="dropped every record"):
        standardize([str(f)], known_by=(tiny_model, tokenizer), **QUIET)
