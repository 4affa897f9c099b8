"""The fixed eval sets (examples/<domain>/eval/) and their training files (train/): valid, big enough,
disjoint from training, and exactly what examples/build_eval_set.py writes (fast, no model).

Why: every published number is measured on these files. An eval question that also sits in a training
file, an own prefill that already states the fact, or a file that drifted from its builder would make
those numbers mean something else than the READMEs say.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from mule_cli.attack.own_answer import FILLER, _words
from mule_cli.intentions import REFUSAL
from mule_cli.records import read_many, read_records
from mule_cli.standardize.text import normalize_question

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DOMAINS = ["harry_potter", "cyber"]
GENERAL = EXAMPLES / "general_retain_eval.jsonl"
EVAL_FILES = {  # file -> (objective, minimum records)
    "forget.jsonl": ("forget", 20),
    "adversarial_own.jsonl": ("adversarial", 20),
    "adversarial_search.jsonl": ("adversarial", 20),
    "neighbor_mcq.jsonl": ("neighbor", 40),
    "retain.jsonl": ("retain", 150),
}
TRAIN_FILES = ("forget", "neighbor", "neighbor_mcq", "retain")

spec = importlib.util.spec_from_file_location("build_eval_set", EXAMPLES / "build_eval_set.py")
build_eval_set = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_eval_set)


def _eval(domain: str, name: str) -> list[dict]:
    obj, _ = EVAL_FILES[name]
    return read_records(EXAMPLES / domain / "eval" / name, objectives=[obj])


def _questions(records) -> set[str]:
    return {normalize_question(r["question"]) for r in records}


@pytest.mark.parametrize("domain", DOMAINS)
def test_eval_files_are_valid_and_sized_for_decisions(domain):
    for name, (obj, minimum) in EVAL_FILES.items():
        records = _eval(domain, name)
        assert len(records) >= minimum, f"{domain}/eval/{name}: {len(records)} < {minimum}"
        assert [r["id"] for r in records] == sorted(r["id"] for r in records), "eval files are sorted by id"
    # ids stay unique across the eval files, so they can be concatenated into one --data file
    read_many(sorted((EXAMPLES / domain / "eval").glob("*.jsonl")))


@pytest.mark.parametrize("domain", DOMAINS)
def test_no_eval_question_is_trained_on(domain):
    eval_q = set()
    for name in EVAL_FILES:
        eval_q |= _questions(_eval(domain, name))
    for other in DOMAINS:
        for name in TRAIN_FILES:
            shared = eval_q & _questions(read_records(EXAMPLES / other / "train" / f"{name}.jsonl"))
            assert not shared, f"{domain} eval questions in {other}/train/{name}.jsonl: {sorted(shared)[:3]}"
        shared = eval_q & _questions(read_records(EXAMPLES / other / "candidates" / "retain.jsonl"))
        assert not shared, f"{domain} eval questions among {other}'s retain candidates: {sorted(shared)[:3]}"


@pytest.mark.parametrize("domain", DOMAINS)
def test_train_files_are_the_known_records_minus_eval(domain):
    d = EXAMPLES / domain
    eval_q = set()
    for name in EVAL_FILES:
        eval_q |= _questions(_eval(domain, name))
    for obj in ("forget", "neighbor", "retain"):
        known = read_records(d / f"{obj}.jsonl", objectives=[obj])
        expected = sorted((r for r in known if normalize_question(r["question"]) not in eval_q), key=lambda r: r["id"])
        assert read_records(d / "train" / f"{obj}.jsonl", objectives=[obj]) == expected, f"{domain}/train/{obj}"
    known_mcq = {r["id"]: r for r in read_records(d / "neighbor_mcq.jsonl")}
    train_qa = read_records(d / "train" / "neighbor.jsonl")
    train_mcq = read_records(d / "train" / "neighbor_mcq.jsonl", objectives=["neighbor"])
    assert [r["qa_id"] for r in train_mcq] == [r["id"] for r in train_qa]
    for rec in train_mcq:
        assert rec == known_mcq[rec["id"]], "a train MCQ differs from the known neighbour MCQ of the same record"


@pytest.mark.parametrize("domain", DOMAINS)
def test_eval_forget_is_known_and_half_of_it(domain):
    d = EXAMPLES / domain
    known = {r["id"]: r for r in read_records(d / "forget.jsonl")}
    eval_forget = _eval(domain, "forget.jsonl")
    assert len(eval_forget) == max(20, -(-len(known) // 2))
    for rec in eval_forget:
        assert known[rec["id"]] == rec


@pytest.mark.parametrize("domain", DOMAINS)
def test_adversarial_records_anchor_on_eval_forget(domain):
    forget = {r["id"]: r for r in _eval(domain, "forget.jsonl")}
    for name, family in (("adversarial_own.jsonl", "own"), ("adversarial_search.jsonl", "search")):
        records = _eval(domain, name)
        assert {r["anchor_of"] for r in records} <= set(forget), f"{name}: anchor outside eval/forget.jsonl"
        for rec in records:
            assert rec["prefill_family"] == family and rec["prefill_family"] in ("search", "own")
            assert rec.get("prefill"), f"{rec['id']}: no prefill"
            anchor = forget[rec["anchor_of"]]
            assert (rec["question"], rec["answer"]) == (anchor["question"], anchor["answer"])
    search = _eval(domain, "adversarial_search.jsonl")
    assert {r["anchor_of"] for r in search} == set(forget), "every eval forget record has a searched prefill"


@pytest.mark.parametrize("domain", DOMAINS)
def test_own_prefills_are_the_base_answer_cut_before_the_fact(domain):
    generations = build_eval_set.probe_generations(EXAMPLES / domain)
    for rec in _eval(domain, "adversarial_own.jsonl"):
        gen = generations[rec["anchor_of"]]
        assert rec["id"] == f"{rec['anchor_of']}-own"
        assert gen.startswith(rec["prefill"]) and len(rec["prefill"]) < len(gen.rstrip()), rec["id"]
        novel = set(_words(rec["answer"])) - set(_words(rec["question"])) - FILLER
        assert novel and not novel & set(_words(rec["prefill"])), f"{rec['id']}: the prefill states the fact"


@pytest.mark.parametrize("domain", DOMAINS)
def test_eval_neighbor_mcq_is_an_unfiltered_candidate_sample(domain):
    d = EXAMPLES / domain
    cands = {r["id"]: r for r in read_records(d / "candidates" / "neighbor.jsonl")}
    known = {r["id"] for r in read_records(d / "neighbor.jsonl")}
    mcq = _eval(domain, "neighbor_mcq.jsonl")
    assert len(mcq) >= 60
    for rec in mcq:
        src = cands[rec["qa_id"]]
        assert rec["id"] == f"{src['id']}-mcq" and rec["question"] == src["question"]
        assert len(rec["choices"]) == 4 and len(set(rec["choices"])) == 4
        assert rec["choices"][rec["answer_index"]] == src["answer"]
        assert REFUSAL in rec["choices"] and rec["choices"].index(REFUSAL) != rec["answer_index"]
    assert len({r["answer_index"] for r in mcq}) >= 3
    picked = {r["qa_id"] for r in mcq}
    assert picked & known and picked - known, "the sample holds known and unknown neighbours alike"


def test_general_retain_eval_set():
    records = read_records(GENERAL, objectives=["retain"])
    assert len(records) >= 170
    assert [r["id"] for r in records] == [f"gen-retain-{i:03d}" for i in range(1, len(records) + 1)]
    assert all(r["domain"] == "general" and r["source"] == "examples/general_retain_eval.jsonl" for r in records)
    assert len(_questions(records)) == len(records), "a question is asked twice"
    off_topic = ("harry", "potter", "hogwarts", "wizard", "witch", "magic", "fantasy", "computer", "hack",
                 "malware", "virus", "cyber", "software", "internet", "password")
    for rec in records:
        text = f"{rec['question']} {rec['answer']}".lower()
        assert not any(w in text for w in off_topic), rec
        assert 0 < len(rec["answer"].split()) <= 6, f"{rec['id']}: reference answers are short"
    # no question serves another objective anywhere in the examples (candidates include the known files)
    for domain in DOMAINS:
        for obj in ("forget", "neighbor", "retain"):
            shared = _questions(records) & _questions(read_records(EXAMPLES / domain / "candidates" / f"{obj}.jsonl"))
            assert not shared, f"general retain questions among {domain}'s {obj} candidates: {sorted(shared)[:3]}"
    for domain in DOMAINS:
        assert read_records(EXAMPLES / domain / "eval" / "retain.jsonl") == records


@pytest.mark.parametrize("domain", DOMAINS)
def test_builder_reproduces_the_committed_files(domain, tmp_path):
    """The model-free part of the builder, rerun on a copy, gives the same bytes (seeded, sorted)."""
    src = EXAMPLES / domain
    copy = tmp_path / domain
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("probe_cache.jsonl"))
    for sub in ("eval", "train"):
        shutil.rmtree(copy / sub)
    (copy / "eval").mkdir()
    shutil.copy(src / "eval" / "adversarial_search.jsonl", copy / "eval")  # made by `mule attack` (model)
    others = [EXAMPLES / d for d in DOMAINS if d != domain]
    assert build_eval_set.sibling_domains(src) == others
    counts = build_eval_set.build(copy, skip_search=True, other_domains=others)
    assert counts["eval/adversarial_search.jsonl"] >= 20
    for sub in ("eval", "train"):
        for path in sorted((src / sub).glob("*.jsonl")):
            assert (copy / sub / path.name).read_bytes() == path.read_bytes(), f"{domain}/{sub}/{path.name}"
    assert sorted(p.name for p in (copy / "eval").glob("*.jsonl")) == sorted(EVAL_FILES)

