"""The unified JSONL record (SPEC §2): read, validate, write.

Every subcommand speaks this format, so validation lives in one place and its errors name
file, line and field. Unknown keys are kept untouched so records survive a pipe of commands.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from .atomic import atomic_open
from .errors import MuleError, open_text

FORGET_LIKE = ("forget", "adversarial")  # the objectives whose knowledge is removed
OBJECTIVES = ("forget", "retain", "neighbor", "adversarial")
REQUIRED_STR = ("id", "objective", "question", "answer")
OPTIONAL_STR = ("prefill", "anchor_of", "domain", "source", "prefill_family")
PREFILL_FAMILIES = ("search", "own")  # found by `mule attack` / the base model's own answer cut before the fact
STDIO = "-"


class RecordError(MuleError):
    """A record that breaks the schema; the message is `FILE: line N: field 'F': problem`."""


def _where(name: str, lineno: int, field: str | None = None) -> str:
    loc = f"{name}: line {lineno}"
    return f"{loc}: field '{field}'" if field else loc


def validate_record(rec, name: str = "<record>", lineno: int = 0) -> dict:
    """Check one decoded JSON value against SPEC §2 and return it (unchanged)."""
    if not isinstance(rec, dict):
        raise RecordError(f"{_where(name, lineno)}: expected a JSON object, got {type(rec).__name__}")
    for field in REQUIRED_STR:
        if field not in rec:
            raise RecordError(f"{_where(name, lineno, field)}: missing (required: {', '.join(REQUIRED_STR)})")
        if not isinstance(rec[field], str):
            raise RecordError(f"{_where(name, lineno, field)}: must be a string, got {type(rec[field]).__name__}")
    if not rec["id"].strip():
        raise RecordError(f"{_where(name, lineno, 'id')}: must not be empty")
    if rec["objective"] not in OBJECTIVES:
        raise RecordError(
            f"{_where(name, lineno, 'objective')}: {rec['objective']!r} is not one of {', '.join(OBJECTIVES)}"
        )
    if not rec["question"].strip():
        raise RecordError(f"{_where(name, lineno, 'question')}: must not be empty")
    for field in OPTIONAL_STR:
        if field in rec and rec[field] is not None and not isinstance(rec[field], str):
            raise RecordError(f"{_where(name, lineno, field)}: must be a string, got {type(rec[field]).__name__}")
    family = rec.get("prefill_family")
    if family is not None and family not in PREFILL_FAMILIES:
        raise RecordError(f"{_where(name, lineno, 'prefill_family')}: {family!r} is not one of "
                          f"{', '.join(PREFILL_FAMILIES)}")
    if "choices" in rec and rec["choices"] is not None:
        choices = rec["choices"]
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise RecordError(f"{_where(name, lineno, 'choices')}: must be a list of at least two strings")
        idx = rec.get("answer_index")
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise RecordError(f"{_where(name, lineno, 'answer_index')}: required with 'choices', must be an integer")
        if not 0 <= idx < len(choices):
            raise RecordError(f"{_where(name, lineno, 'answer_index')}: {idx} is outside 0..{len(choices) - 1}")
    elif "answer_index" in rec and rec["answer_index"] is not None:
        raise RecordError(f"{_where(name, lineno, 'answer_index')}: given without 'choices'")
    return rec


def display_name(path) -> str:
    return "<stdin>" if str(path) == STDIO else str(path)


def _lines(path) -> Iterator[tuple[int, str]]:
    if str(path) == STDIO:
        yield from enumerate(sys.stdin, start=1)
        return
    with open_text(path, "JSONL file", RecordError) as handle:
        try:
            yield from enumerate(handle, start=1)
        except UnicodeDecodeError as exc:
            raise RecordError(f"{path}: not UTF-8 text ({exc.reason})") from None


def read_records(path, *, allow_empty: bool = False, objectives: Iterable[str] | None = None) -> list[dict]:
    """Read and validate a whole JSONL file (or `-` for stdin). Blank lines are skipped.

    Everything is validated before anything is returned, so callers never act on half a file.
    """
    name = display_name(path)
    records, first_line = [], {}
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{_where(name, lineno)}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        validate_record(rec, name, lineno)
        if rec["id"] in first_line:
            raise RecordError(
                f"{_where(name, lineno, 'id')}: duplicate id {rec['id']!r} (first on line {first_line[rec['id']]})"
            )
        first_line[rec["id"]] = lineno
        records.append(rec)
    if not records and not allow_empty:
        raise RecordError(f"{name}: no records (empty input)")
    if objectives is not None:
        allowed = set(objectives)
        for rec in records:
            if rec["objective"] not in allowed:
                raise RecordError(
                    f"{_where(name, first_line[rec['id']], 'objective')}: {rec['objective']!r} not accepted here "
                    f"(expected {', '.join(sorted(allowed))})"
                )
    return records


def read_many(paths: Iterable, **kwargs) -> list[dict]:
    """Read several files into one list; ids must stay unique across them."""
    out, seen = [], {}
    for path in paths:
        for rec in read_records(path, **kwargs):
            if rec["id"] in seen:
                raise RecordError(f"{display_name(path)}: duplicate id {rec['id']!r} (also in {seen[rec['id']]})")
            seen[rec["id"]] = display_name(path)
            out.append(rec)
    return out


def dumps(rec: dict) -> str:
    return json.dumps(rec, ensure_ascii=False)


def write_records(records: Iterable[dict], path=STDIO, *, validate: bool = True) -> int:
    """Write records as JSONL to a path (atomically) or stdout (`-`/None). Returns the count."""
    records = list(records)
    if validate:
        ids = Counter()
        for i, rec in enumerate(records, start=1):
            validate_record(rec, "<output>", i)
            ids[rec["id"]] += 1
        dup = [k for k, v in ids.items() if v > 1]
        if dup:
            raise RecordError(f"<output>: duplicate id {dup[0]!r}")
    if path is None or str(path) == STDIO:
        for rec in records:
            sys.stdout.write(dumps(rec) + "\n")
        sys.stdout.flush()
        return len(records)
    with atomic_open(Path(os.fspath(path))) as handle:
        for rec in records:
            handle.write(dumps(rec) + "\n")
    return len(records)


def by_objective(records: Iterable[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {k: [] for k in OBJECTIVES}
    for rec in records:
        out[rec["objective"]].append(rec)
    return out


def join_prefill(prefill: str | None, answer: str) -> str:
    """The answer text as it continues after a prefill (one space between them when needed).
    Here, not in lm.py, so that torch-free modules (intentions) share the one spacing rule."""
    if not prefill or prefill[-1:].isspace() or answer[:1].isspace():
        return answer
    return " " + answer
