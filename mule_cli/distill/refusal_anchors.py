"""`--refusal-anchors`: keep the base model's own likelihood of refusing questions outside the target.

Why: on the default model the forget side teaches "I do not know." on Harry Potter questions and the
habit spreads. Measured on the HP neighbour MCQs, it spreads mostly through the refusal's
*continuation*: log p(" do not know." | "I") rises by about 1 nat per token, about four times in total
what log p("I") gains (on the training neighbours log p("I") stays where the base had it), and no
training record ever puts the student on that path for a non-target question, so nothing holds it back.
A refusal anchor is that path: a copy of a neighbour or retain record forced on the refusal text,
distilled from the plain frozen model (the student's own context, no intention, no demos), so along it
the student keeps the base's probabilities: it may refuse a neighbour question no more readily than the
base did. The copies are trained as retain (self-distillation) and never become demonstrations.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import MuleError
from ..intentions import REFUSAL
from ..objective_options import objective_list
from ..records import OBJECTIVES

KEY = "refusal_anchor"  # marks a generated copy; its value is the id of the record it copies
ALLOWED = ("neighbor", "retain")


def parse_objectives(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """`neighbor,retain` -> ('neighbor', 'retain'); '' / 'none' / None -> ()."""
    items = objective_list(value)
    bad = [v for v in items if v not in ALLOWED]
    if bad:
        hint = "" if all(v in OBJECTIVES for v in bad) else f" (objectives: {', '.join(OBJECTIVES)})"
        raise MuleError(f"--refusal-anchors: {', '.join(bad)} cannot be anchored; use neighbor and/or retain{hint}")
    return tuple(dict.fromkeys(items))


def is_anchor(record: dict) -> bool:
    return bool(record.get(KEY))


def refusal_anchor_records(records: Sequence[dict], objectives: Sequence[str], refusal: str = REFUSAL) -> list[dict]:
    """One retain copy forced on `refusal` per record of `objectives` (records with a prefill are skipped:
    an attack prefix followed by a refusal is the adversarial side's job)."""
    ids = {r["id"] for r in records}
    out = []
    for rec in records:
        if rec["objective"] not in objectives or rec.get("prefill") or is_anchor(rec):
            continue
        new_id = f"{rec['id']}~refusal"
        while new_id in ids:
            new_id += "~"
        ids.add(new_id)
        out.append({"id": new_id, "objective": "retain", "question": rec["question"], "answer": refusal,
                    "anchor_of": rec["id"], KEY: rec["id"]})
    return out
