"""Readers that turn the inputs of `mule standardize` into QA items and passages.

Accepted: plain text / markdown (passages), JSONL or a JSON array in common shapes
(unified records, question/answer, prompt/completion, instruction/input/output, chat messages,
MCQ with choices + index or letter, text), CSV/TSV with a header (same column names) and
headerless MMLU CSV (question, A, B, C, D, letter). Every problem names file and line.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MuleError
from ..records import OBJECTIVES, REQUIRED_STR, validate_record

FORMATS = ("auto", "text", "jsonl", "csv", "mcq")
TEXT_EXT = {".txt", ".md", ".markdown", ".rst", ".text"}
JSONL_EXT = {".jsonl", ".json", ".ndjson"}
CSV_EXT = {".csv", ".tsv"}

QUESTION_KEYS = ("question", "prompt", "instruction", "query", "q", "input_text", "problem")
ANSWER_KEYS = ("answer", "completion", "output", "response", "target", "a", "answer_text", "solution")
TEXT_KEYS = ("text", "passage", "content", "document", "body")
CHOICE_KEYS = ("choices", "options")
INDEX_KEYS = ("answer_index", "label", "answerkey", "answer_idx", "gold", "correct")
DOMAIN_KEYS = ("domain", "subject", "category", "topic")
LETTERS = "ABCDEFGHIJ"


class FormatError(MuleError):
    """An input that cannot be read; the message names file and line."""


@dataclass
class Passage:
    """A block of free text to be turned into QA pairs."""
    text: str
    source: str  # file:line of the block's first line
    objective: str
    domain: str | None = None
    line_starts: list = field(default_factory=list)  # (char offset in text, line number) per joined line

    def line_at(self, offset: int) -> int | None:
        """Input line number of a character offset in `text` (None when unknown)."""
        line = None
        for start, lineno in self.line_starts:
            if start > offset:
                break
            line = lineno
        return line


@dataclass
class Item:
    """A QA item read from a structured file; `record` lacks an id unless it came in unified."""
    record: dict
    unified: bool = False
    where: str = ""


@dataclass
class Loaded:
    items: list[Item] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- helpers

def _lower_keys(row: dict) -> dict:
    return {str(k).strip().lower(): v for k, v in row.items()}


def _first(row: dict, keys) -> tuple[str | None, object]:
    for k in keys:
        if k in row and row[k] not in (None, ""):
            return k, row[k]
    return None, None


def _letter_or_index(value, n: int, where: str) -> int:
    """An answer given as 0-based int, 'B', 'b', '(B)' or '2' (1-based digit string is ambiguous: 0-based)."""
    if isinstance(value, bool):
        raise FormatError(f"{where}: answer index must be an integer or a letter, got {value!r}")
    if isinstance(value, int):
        idx = value
    elif isinstance(value, str):
        s = value.strip().strip("()[]. ").upper()
        if len(s) == 1 and s in LETTERS:
            idx = LETTERS.index(s)
        elif s.lstrip("-").isdigit():
            idx = int(s)
        else:
            raise FormatError(f"{where}: answer {value!r} is neither an index nor a letter A-{LETTERS[n - 1]}")
    else:
        raise FormatError(f"{where}: answer index must be an integer or a letter, got {type(value).__name__}")
    if not 0 <= idx < n:
        raise FormatError(f"{where}: answer index {value!r} is outside the {n} choices")
    return idx


def _as_text(value, where: str, key: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value[0]  # e.g. SQuAD-like answers lists: the first is the reference
    if isinstance(value, dict) and isinstance(value.get("text"), (str, list)):
        return _as_text(value["text"], where, key)
    if not isinstance(value, str):
        raise FormatError(f"{where}: field '{key}' must be text, got {type(value).__name__}")
    return value.strip()


def _mcq_choices(row: dict, where: str) -> tuple[list[str] | None, dict]:
    """Choices from a list, an ARC-style {text, label} object, or A/B/C/D columns."""
    used = {}
    key, val = _first(row, CHOICE_KEYS)
    if key is not None:
        used[key] = True
        if isinstance(val, dict) and isinstance(val.get("text"), list):
            val = val["text"]
        if isinstance(val, str):
            try:
                val = json.loads(val)
            except json.JSONDecodeError:
                val = [c.strip() for c in val.split("|")]
        if not isinstance(val, list) or len(val) < 2:
            raise FormatError(f"{where}: field '{key}' must be a list of at least two options")
        return [_as_text(c, where, key) for c in val], used
    letters = [c.lower() for c in LETTERS]
    if "a" in row and "b" in row and not isinstance(row.get("a"), (dict, list)):
        opts = []
        for c in letters:
            if c in row and row[c] not in (None, ""):
                opts.append(_as_text(row[c], where, c))
                used[c] = True
            else:
                break
        if len(opts) >= 2:
            return opts, used
    return None, {}


def shape_record(row: dict, where: str, objective: str, force_mcq: bool = False):
    """Map one decoded row to ('qa', record-without-id) or ('text', passage text)."""
    if not isinstance(row, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(row).__name__}")
    low = _lower_keys(row)
    if "messages" in low and isinstance(low["messages"], list):
        turns = low["messages"]
        user = next((m.get("content") for m in turns if isinstance(m, dict) and m.get("role") == "user"), None)
        bot = next((m.get("content") for m in turns if isinstance(m, dict) and m.get("role") == "assistant"), None)
        if not isinstance(user, str) or not isinstance(bot, str):
            raise FormatError(f"{where}: field 'messages' needs a user and an assistant turn with text content")
        return "qa", {"objective": objective, "question": user.strip(), "answer": bot.strip()}
    choices, used = _mcq_choices(low, where)
    qkey, question = _first(low, QUESTION_KEYS)
    if qkey is None:
        tkey, text = _first(low, TEXT_KEYS)
        if tkey is not None and choices is None:
            return "text", _as_text(text, where, tkey)
        raise FormatError(f"{where}: no question field (looked for {', '.join(QUESTION_KEYS)}; "
                          f"found {', '.join(map(str, row)) or 'no keys'})")
    question = _as_text(question, where, qkey)
    consumed = {qkey, *used}
    if qkey == "instruction" and "input" in low:
        if low["input"]:
            question = f"{question}\n\n{_as_text(low['input'], where, 'input')}"
        consumed.add("input")
    rec = {"objective": objective, "question": question}
    if choices is not None:
        ikey, ival = _first(low, INDEX_KEYS)
        if ikey is None and "answer" in low:
            ikey, ival = "answer", low["answer"]
            if isinstance(ival, str) and ival.strip() in choices:
                ival = choices.index(ival.strip())
        if ikey is None:
            raise FormatError(f"{where}: MCQ row has choices but no answer index or letter "
                              f"(looked for answer, {', '.join(INDEX_KEYS)})")
        idx = _letter_or_index(ival, len(choices), where)
        consumed.add(ikey)
        rec.update(answer=choices[idx], choices=choices, answer_index=idx)
    elif force_mcq:
        raise FormatError(f"{where}: --format mcq but the row has no choices/options or A/B/C/D fields")
    else:
        akey, answer = _first(low, ANSWER_KEYS)
        if akey is None:
            raise FormatError(f"{where}: no answer field (looked for {', '.join(ANSWER_KEYS)})")
        rec["answer"] = _as_text(answer, where, akey)
        consumed.add(akey)
    if not rec["question"]:
        raise FormatError(f"{where}: field '{qkey}' is empty")
    dkey, domain = _first(low, DOMAIN_KEYS)
    if dkey is not None and isinstance(domain, str):
        rec["domain"] = domain
        consumed.add(dkey)
    for k, v in row.items():  # keep the rest untouched (provenance, metadata)
        if str(k).strip().lower() not in consumed and k not in rec and k not in ("id", "objective"):
            rec[k] = v
    return "qa", rec


def _is_unified(row) -> bool:
    return isinstance(row, dict) and all(k in row for k in REQUIRED_STR)


# ----------------------------------------------------------------------------------------- readers

def read_text(name: str, text: str, objective: str) -> list[Passage]:
    """Paragraphs (blank-line separated) with markdown markup removed; source = file:first line."""
    passages, block, starts, in_code = [], [], [], False

    def flush():
        if block:
            body = " ".join(block)
            if body.strip():
                passages.append(Passage(body, f"{name}:{starts[0][1]}", objective, line_starts=list(starts)))
        block.clear()
        starts.clear()

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("```"):
            in_code = not in_code
            flush()
            continue
        if in_code:
            continue
        if not line or re.fullmatch(r"[-*_=]{3,}", line) or line.startswith("#"):
            flush()  # headings and rules end a paragraph and are not content
            continue
        line = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", line)   # list bullets
        line = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", line)   # links/images -> text
        line = re.sub(r"(\*\*|__|\*|`)", "", line)               # emphasis/code marks
        line = re.sub(r"<[^>]+>", "", line)                        # inline html
        if line.startswith(">"):
            line = line.lstrip("> ")
        starts.append((sum(len(b) + 1 for b in block), lineno))
        block.append(line)
    flush()
    return passages


def read_jsonl(name: str, text: str, objective: str, explicit: bool, force_mcq: bool = False) -> Loaded:
    out = Loaded()
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of objects
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{name}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
        lines = [(i, r) for i, r in enumerate(rows, start=1)]
        label = "item"
    else:
        lines = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                lines.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise FormatError(f"{name}: line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        label = "line"
    for lineno, row in lines:
        where = f"{name}: {label} {lineno}"
        if _is_unified(row):
            rec = dict(row)
            if explicit:
                rec["objective"] = objective
            validate_record(rec, name, lineno)
            out.items.append(Item(rec, unified=True, where=where))
            continue
        kind, val = shape_record(row, where, objective, force_mcq)
        if kind == "text":
            out.passages.append(Passage(val, f"{name}:{lineno}", objective,
                                        row.get("domain") if isinstance(row.get("domain"), str) else None))
        else:
            val.setdefault("source", f"{name}:{lineno}")
            out.items.append(Item(val, where=where))
    return out


def read_csv(name: str, text: str, objective: str, force_mcq: bool = False, delimiter: str | None = None) -> Loaded:
    out = Loaded()
    if delimiter is None:
        delimiter = "\t" if name.endswith(".tsv") else ","
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not rows:
        return out
    header = [h.strip().lower() for h in rows[0]]
    known = set(QUESTION_KEYS) | set(TEXT_KEYS) | {"messages"}
    headerless_mmlu = not known.intersection(header) and len(header) >= 4 and \
        header[-1].strip().upper() in LETTERS[: len(header) - 2]
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    if not headerless_mmlu:
        next(reader)
    for fields in reader:
        lineno = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        where = f"{name}: line {lineno}"
        if headerless_mmlu:
            if len(fields) < 4:
                raise FormatError(f"{where}: expected question, options and an answer letter, got {len(fields)} fields")
            row = {"question": fields[0], "choices": fields[1:-1], "answer": fields[-1]}
        else:
            if len(fields) != len(header):
                raise FormatError(f"{where}: {len(fields)} fields but the header has {len(header)}")
            row = dict(zip(rows[0], fields))
        kind, val = shape_record(row, where, objective, force_mcq or headerless_mmlu)
        if kind == "text":
            out.passages.append(Passage(val, f"{name}:{lineno}", objective))
        else:
            val.setdefault("source", f"{name}:{lineno}")
            out.items.append(Item(val, where=where))
    return out


def sniff(name: str, text: str) -> str:
    """Format of a file from its extension, else from its first non-blank content."""
    ext = Path(name).suffix.lower()
    if ext in TEXT_EXT:
        return "text"
    if ext in JSONL_EXT:
        return "jsonl"
    if ext in CSV_EXT:
        return "csv"
    head = text.lstrip()[:1]
    if head in ("{", "["):
        return "jsonl"
    first = text.lstrip().splitlines()[0].lower() if text.strip() else ""
    cols = [c.strip() for c in first.split(",")]
    if len(cols) >= 2 and set(cols) & (set(QUESTION_KEYS) | set(TEXT_KEYS)):
        return "csv"
    return "text"


def read_source(name: str, text: str, fmt: str, objective: str, explicit: bool) -> Loaded:
    kind = sniff(name, text) if fmt in ("auto", "mcq") else fmt
    if kind == "text" and fmt == "mcq":
        kind = "csv" if not text.lstrip().startswith(("{", "[")) else "jsonl"
    if kind == "text":
        return Loaded(passages=read_text(name, text, objective))
    if kind == "jsonl":
        return read_jsonl(name, text, objective, explicit, fmt == "mcq")
    if kind == "csv":
        return read_csv(name, text, objective, fmt == "mcq")
    raise FormatError(f"{name}: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


def expand(path: str) -> list[Path]:
    """A file, or the readable files of a folder (recursive, sorted, hidden files skipped)."""
    p = Path(path)
    if p.is_dir():
        exts = TEXT_EXT | JSONL_EXT | CSV_EXT
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
        if not files:
            raise FormatError(f"{path}: folder has no .txt/.md/.jsonl/.json/.csv/.tsv files")
        return files
    if not p.exists():
        raise FormatError(f"{path}: no such file or folder")
    return [p]


def load_inputs(paths, fmt: str = "auto", objective_of=None) -> Loaded:
    """Read every input. `objective_of(path_arg) -> (objective, explicit)` picks each input's objective."""
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    objective_of = objective_of or (lambda _p: ("forget", False))
    out = Loaded()
    for arg in paths:
        objective, explicit = objective_of(arg)
        if objective not in OBJECTIVES:
            raise FormatError(f"{arg}: objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
        if str(arg) == "-":
            sources = [("<stdin>", sys.stdin.read())]
        else:
            sources = []
            for f in expand(str(arg)):
                try:
                    sources.append((str(f), f.read_text(encoding="utf-8")))
                except UnicodeDecodeError as exc:
                    raise FormatError(f"{f}: not UTF-8 text ({exc.reason})") from None
        for name, text in sources:
            got = read_source(name, text, fmt, objective, explicit)
            out.items.extend(got.items)
            out.passages.extend(got.passages)
    return out
