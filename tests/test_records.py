"""Unified JSONL records: validation names file/line/field, round trips keep unknown keys, output is atomic."""

import json
import subprocess
import sys

import pytest

from mule_cli.errors import MuleError
from mule_cli.records import RecordError, read_many, read_records, write_records

from conftest import write_jsonl


def test_round_trip_keeps_unknown_keys(tmp_path, sample_records):
    rows = [dict(r, extra={"nested": [1, 2]}, score=0.5) for r in sample_records]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    records = read_records(src)
    assert records == rows
    out = tmp_path / "out.jsonl"
    assert write_records(records, out) == len(rows)
    assert read_records(out) == rows


def test_blank_lines_are_skipped(tmp_path, sample_records):
    path = tmp_path / "in.jsonl"
    path.write_text("\n" + json.dumps(sample_records[0]) + "\n\n   \n" + json.dumps(sample_records[1]) + "\n")
    assert [r["id"] for r in read_records(path)] == ["f1", "r1"]


BAD_LINES = [
    ("{not json", "line 2", "invalid JSON"),
    ("[1, 2]", "line 2", "expected a JSON object"),
    ('{"id": 1, "objective": "forget", "question": "q", "answer": "a"}', "field 'id'", "must be a string"),
    ('{"id": "x", "objective": "forget", "question": "q"}', "field 'answer'", "missing"),
    ('{"id": "x", "objective": "forgett", "question": "q", "answer": "a"}', "field 'objective'", "not one of"),
    ('{"id": "x", "objective": "forget", "question": "  ", "answer": "a"}', "field 'question'", "empty"),
    ('{"id": "x", "objective": "forget", "question": "q", "answer": "a", "prefill": 3}', "field 'prefill'", "string"),
    ('{"id": "x", "objective": "neighbor", "question": "q", "answer": "a", "choices": ["a"], "answer_index": 0}',
     "field 'choices'", "at least two"),
    ('{"id": "x", "objective": "neighbor", "question": "q", "answer": "a", "choices": ["a", "b"]}',
     "field 'answer_index'", "required"),
    ('{"id": "x", "objective": "neighbor", "question": "q", "answer": "a", "choices": ["a", "b"], "answer_index": 2}',
     "field 'answer_index'", "outside"),
    ('{"id": "x", "objective": "retain", "question": "q", "answer": "a", "answer_index": 0}',
     "field 'answer_index'", "without"),
    ('{"id": "f1", "objective": "retain", "question": "q", "answer": "a"}', "field 'id'", "duplicate"),
    ('{"id": "x", "objective": "adversarial", "question": "q", "answer": "a", "prefill": "p", "prefill_family": "leading"}',
     "field 'prefill_family'", "not one of search, own"),
]


@pytest.mark.parametrize("line,where,what", BAD_LINES)
def test_invalid_line_names_file_line_and_field(tmp_path, sample_records, line, where, what):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(sample_records[0]) + "\n" + line + "\n")
    with pytest.raises(RecordError) as err:
        read_records(path)
    msg = err.value.format_message()
    assert str(path) in msg and "line 2" in msg and where in msg and what in msg
    assert err.value.exit_code == 2


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(RecordError, match="no such JSONL file"):
        read_records(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(RecordError, match="no records"):
        read_records(empty)
    assert read_records(empty, allow_empty=True) == []


def test_objective_filter_and_duplicates_across_files(tmp_path, sample_records):
    a = write_jsonl(tmp_path / "a.jsonl", sample_records[:2])
    with pytest.raises(RecordError, match="not accepted here"):
        read_records(a, objectives=["forget"])
    with pytest.raises(RecordError, match="duplicate id 'f1'"):
        read_many([a, a])


def test_failed_write_leaves_no_file_and_keeps_old_one(tmp_path, sample_records):
    out = tmp_path / "out.jsonl"
    with pytest.raises(RecordError):
        write_records(sample_records + [{"id": "bad"}], out)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    out.write_text("old\n")

    def exploding():
        yield sample_records[0]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_records(exploding(), out, validate=False)
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_stdin_to_stdout(sample_records):
    code = ("from mule_cli.records import read_records, write_records; "
            "write_records(read_records('-'), '-')")
    data = "".join(json.dumps(r) + "\n" for r in sample_records)
    res = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, text=True, check=True)
    assert [json.loads(line) for line in res.stdout.splitlines()] == sample_records


def test_record_error_is_a_mule_error():
    assert issubclass(RecordError, MuleError)
