"""QA -> MCQ records for evaluation (neighbour accuracy, refusal-pick rate; SPEC §5).

Options: the correct answer, distractors drawn from other answers of the same domain (then the same
objective) preferring answers of the same shape (a number for a number, a name for a name), and a
refusal option. The order is shuffled with a per-record RNG seeded by (seed, id), so a record's
options do not change when other records are added or removed.
"""

from __future__ import annotations

import random
import re

from .text import normalize_question

REFUSAL = "I do not know."
_REFUSAL_RE = re.compile(r"\b(i (do not|don't|dont) know|i am not sure|i'm not sure|cannot answer|can't answer)\b", re.I)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL_RE.search(text))


def answer_shape(text: str) -> str:
    t = text.strip()
    if re.fullmatch(r"[\d.,\s%-]+|\d{3,4}(?:\s*(?:BC|AD|CE))?", t):
        return "number"
    ws = t.split()
    if ws and len(ws) <= 5 and all(w[:1].isupper() or w.lower() in {"of", "the", "and", "de"} for w in ws):
        return "name"
    return "phrase"


MCQ_OBJECTIVES = ("neighbor", "retain")


def make_mcq(records: list[dict], *, n_distractors: int = 3, seed: int = 0, refusal: str = REFUSAL,
             objectives=MCQ_OBJECTIVES) -> list[dict]:
    """Add `choices`/`answer_index` to records of `objectives` that have none (returns new dicts).

    Forget/adversarial records are left alone by default: their metrics are ROUGE and ASR, not MCQ."""
    objectives = set(objectives)
    pools: dict[tuple, list[str]] = {}
    for rec in records:
        if rec.get("choices") or is_refusal(rec["answer"]) or rec["objective"] not in objectives:
            continue
        for key in ((rec["objective"], rec.get("domain")), (rec["objective"], None)):
            pools.setdefault(key, [])
            if rec["answer"] not in pools[key]:
                pools[key].append(rec["answer"])
    out = []
    for rec in records:
        rec = dict(rec)
        if rec.get("choices") or rec["objective"] not in objectives:
            out.append(rec)
            continue
        rng = random.Random(f"{seed}:{rec['id']}")
        correct = rec["answer"]
        taken = {normalize_question(correct), normalize_question(refusal)}
        shape = answer_shape(correct)
        distractors: list[str] = []
        for key in ((rec["objective"], rec.get("domain")), (rec["objective"], None)):
            pool = [a for a in pools.get(key, []) if normalize_question(a) not in taken]
            rng.shuffle(pool)
            pool.sort(key=lambda a: answer_shape(a) != shape)  # stable: same shape first, random within
            for a in pool[: n_distractors - len(distractors)]:
                distractors.append(a)
                taken.add(normalize_question(a))
            if len(distractors) >= n_distractors:
                break
        options = [correct, *distractors, refusal]
        rng.shuffle(options)
        rec["choices"] = options
        rec["answer_index"] = options.index(correct)
        out.append(rec)
    return out
