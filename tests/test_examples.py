"""The shipped example domains are valid inputs for every subcommand (no model needed, fast).

Why: `make demo` and docs/RESULTS.md start from these files; a malformed record or an eval question
that also sits in another objective would silently spoil every number downstream.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mule_cli.intentions import REFUSAL
from mule_cli.records import read_records

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DOMAINS = ["harry_potter", "cyber"]
QA_FILES = ("forget", "neighbor", "retain")


@pytest.mark.parametrize("domain", DOMAINS)
def test_qa_files_are_valid_known_subsets_of_the_candidates(domain):
    d = EXAMPLES / domain
    report = {}
    for line in (d / "candidates" / "probe_report.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        report[row["id"]] = row
    for obj in QA_FILES:
        kept = read_records(d / f"{obj}.jsonl", objectives=[obj])
        cands = {r["id"]: r for r in read_records(d / "candidates" / f"{obj}.jsonl", objectives=[obj])}
        assert len(kept) >= 20, f"{domain}/{obj}: only {len(kept)} known records"
        for rec in kept:
            assert cands[rec["id"]] == rec, f"{rec['id']} differs from its candidate"
            assert report[rec["id"]]["known"], f"{rec['id']} kept but the probe did not mark it known"
            assert report[rec["id"]]["recall"] >= 0.5
            assert rec["source"] == f"examples/{domain}"
        n_known = sum(1 for r in report.values() if r["objective"] == obj and r["known"])
        assert n_known == len(kept), f"{domain}/{obj}: probe report and kept file disagree"


@pytest.mark.parametrize("domain", DOMAINS)
def test_no_question_serves_two_objectives(domain):
    d = EXAMPLES / domain
    seen = {}
    for obj in QA_FILES:
        for rec in read_records(d / "candidates" / f"{obj}.jsonl"):
            q = rec["question"].strip().lower()
            assert q not in seen or seen[q] == obj, f"{rec['question']!r} is in {seen.get(q)} and {obj}"
            seen[q] = obj


@pytest.mark.parametrize("domain", DOMAINS)
def test_neighbor_mcq_has_answer_two_distractors_and_refusal(domain):
    d = EXAMPLES / domain
    qa = {r["id"]: r for r in read_records(d / "neighbor.jsonl")}
    mcq = read_records(d / "neighbor_mcq.jsonl", objectives=["neighbor"])
    assert len(mcq) == len(qa)
    for rec in mcq:
        src = qa[rec["qa_id"]]
        assert rec["question"] == src["question"]
        assert len(rec["choices"]) == 4 and len(set(rec["choices"])) == 4
        assert rec["choices"][rec["answer_index"]] == src["answer"]
        assert REFUSAL in rec["choices"] and rec["choices"].index(REFUSAL) != rec["answer_index"]
    # the correct option must not sit in one fixed slot
    assert len({r["answer_index"] for r in mcq}) >= 3


@pytest.mark.parametrize("domain", DOMAINS)
def test_forget_passages(domain):
    passages = sorted((EXAMPLES / domain / "forget_passages").glob("*.md"))
    assert len(passages) >= 3
    for p in passages:
        assert 200 < len(p.read_text(encoding="utf-8")) < 3000
