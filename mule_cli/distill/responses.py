"""`--response teacher|base` and `--demo-answers base`: greedy answers of the frozen base model (with the
teacher's intention context, or to the plain question), generated once and cached.

Why cache: generation is the slowest part of a CPU run and the answers depend only on the model,
the teacher contexts and the decoding settings, so they are stored under the mule cache keyed by a
hash of exactly those and reused by later runs (and by ranks other than 0).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

from ..atomic import write_json
from ..lm import generate
from ..models import cache_dir
from ..rouge import rouge_l
from .refusal_anchors import is_anchor

MAX_NEW_TOKENS = 48


def records_answered_by(records: Sequence[dict], sources: dict[str, str], source: str) -> list[dict]:
    """The records whose objective's `--response` source is `source` (refusal anchors keep their forced
    refusal whatever the source)."""
    return [r for r in records if sources.get(r["objective"]) == source and not is_anchor(r)]


def states_answer(generated: str, answer: str) -> bool:
    """Whether a generated answer says every word of the data answer (ROUGE-L recall 1): only then may a demo
    show it in place of the data answer (a wrong or evasive base answer would teach the teacher that)."""
    return bool(generated.strip()) and rouge_l(answer, generated)[0] >= 1.0


def cache_path(model_path: str, prompts: Sequence[str]) -> Path:
    h = hashlib.sha256()
    h.update(str(model_path).encode())
    for f in sorted(Path(model_path).glob("*.safetensors")):  # a retrained folder at the same path is a new key
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(str(MAX_NEW_TOKENS).encode())
    for p in prompts:
        h.update(b"\0" + p.encode())
    return cache_dir() / "distill" / f"teacher-responses-{h.hexdigest()[:24]}.json"


def teacher_responses(lm, tokenizer, records: Sequence[dict], teacher_prompts: Sequence[str], model_path: str, *,
                      generate_missing: bool = True, progress: bool = True, label: str = "teacher answers") -> dict[str, str] | None:
    """{record id: greedy continuation after its (prompt + prefill)}; None when not cached
    and generate_missing is False (non-zero ranks wait for rank 0)."""
    path = cache_path(model_path, teacher_prompts)
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    if not generate_missing:
        return None
    texts = generate(lm, tokenizer, list(teacher_prompts), max_new_tokens=MAX_NEW_TOKENS,
                     progress=label if progress else False)
    out = {rec["id"]: text for rec, text in zip(records, texts)}
    write_json(path, out)
    return out
