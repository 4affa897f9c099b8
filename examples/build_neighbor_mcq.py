"""Build `neighbor_mcq.jsonl` (SPEC §5 neighbour MCQ) from an example's known neighbour QA.

Why: the neighbour metric scores options by log-likelihood, so every question needs its correct
answer, two plausible wrong answers and the refusal "I do not know." (to catch over-refusal).
Distractors are the answers of *other* neighbour candidates with the same `answer_type` (an author
for an author, a year for a year) and a similar length, so no option stands out by form alone.
Everything is seeded by record id: the same input always gives the same file.

Example:
    .venv/bin/python examples/build_neighbor_mcq.py examples/harry_potter
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from mule_cli.records import read_records, write_records

REFUSAL = "I do not know."
N_DISTRACTORS = 2


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("the ", "").split())


def pick_distractors(rec: dict, pool: list[dict], rng: random.Random) -> list[str]:
    """Two answers from same-type records, closest in word count, never equal to the correct answer."""
    target = _norm(rec["answer"])
    kind = rec.get("answer_type")

    def candidates(same_type: bool) -> list[str]:
        options, seen = [], {target}
        for other in pool:
            key = _norm(other["answer"])
            if other["id"] == rec["id"] or key in seen or target in key or key in target:
                continue
            if same_type and other.get("answer_type") != kind:
                continue
            seen.add(key)
            options.append(other["answer"])
        return options

    options = candidates(same_type=True)
    if len(options) < N_DISTRACTORS:  # a rare answer type: fall back to answers of any type
        print(f"{rec['id']}: only {len(options)} answers of type {kind!r}; drawing from all types")
        options = candidates(same_type=False)
    n_words = len(rec["answer"].split())
    rng.shuffle(options)
    options.sort(key=lambda a: abs(len(a.split()) - n_words))  # stable: random among equally close
    closest = options[:max(N_DISTRACTORS, 6)]
    return rng.sample(closest, N_DISTRACTORS)


def build(domain: Path, seed: int = 0, records: list[dict] | None = None) -> list[dict]:
    """MCQs for `records` (default: the domain's known `neighbor.jsonl`), distractors drawn from all of
    the domain's neighbour candidates. A record's MCQ depends only on (seed, id, candidates), so the MCQ
    of a record is the same whichever list it is built in."""
    if records is None:
        records = read_records(domain / "neighbor.jsonl", objectives=["neighbor"])
    pool = read_records(domain / "candidates" / "neighbor.jsonl", objectives=["neighbor"])
    out = []
    for rec in records:
        rng = random.Random(f"{seed}:{rec['id']}")
        choices = [rec["answer"], *pick_distractors(rec, pool, rng), REFUSAL]
        rng.shuffle(choices)
        mcq = {k: v for k, v in rec.items() if k not in ("answer_type",)}
        mcq.update(id=f"{rec['id']}-mcq", choices=choices, answer_index=choices.index(rec["answer"]),
                   qa_id=rec["id"])
        out.append(mcq)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("domain", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    records = build(args.domain, args.seed)
    n = write_records(records, args.domain / "neighbor_mcq.jsonl")
    print(f"{args.domain / 'neighbor_mcq.jsonl'}: {n} MCQ records")


if __name__ == "__main__":
    main()
