"""`--own-prefills`: adversarial copies of the forget records, prefilled with the base model's own answer
up to the fact (mule_cli/attack/own_answer.py).

Why: trained on the data's short answers ("J.K. Rowling"), the forget side teaches the student not to
*start* with the fact. A student that keeps the base's sentence style (`--demo-answers neighbor=base`)
answers "The author of … is actually" and then still says it: measured on the HP example, Retain stayed
near the base but Forget ROUGE only halved. An own-answer copy puts that position under the adversarial
teacher. Measured on the default model it did not help (docs/RESULTS.md, tenth round): after its own words
the 135M teacher still names the fact (median log p of its first token −1.32, plain −1.30), unlike after an
attack template (−3.89). A teacher that follows its intention mid-answer (a larger model) may gain from it.
"""

from __future__ import annotations

from typing import Sequence

from ..attack.own_answer import own_answer_prefill

KEY = "own_prefill"  # marks a generated copy; its value is the id of the forget record it copies
SOURCE = "own-answer prefill"


def is_own_prefill(record: dict) -> bool:
    return bool(record.get(KEY))


def own_prefill_records(records: Sequence[dict], answers: dict[str, str]) -> list[dict]:
    """One adversarial copy per forget record whose base answer (`answers`, by id) states the fact after
    some words of its own; the copy is anchored to the forget record so both share a batch."""
    ids = {r["id"] for r in records}
    out = []
    for rec in records:
        if rec["objective"] != "forget" or rec.get("prefill"):
            continue
        cut = own_answer_prefill(answers.get(rec["id"]) or "", rec["answer"], rec["question"])
        if cut is None:
            continue
        new_id = f"{rec['id']}~own"
        while new_id in ids:
            new_id += "~"
        ids.add(new_id)
        prefill, fact = cut
        out.append({"id": new_id, "objective": "adversarial", "question": rec["question"], "answer": fact,
                    "prefill": prefill, "anchor_of": rec["id"], "source": SOURCE, KEY: rec["id"]})
    return out
