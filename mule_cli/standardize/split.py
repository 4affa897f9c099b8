"""Disjoint train/eval split: no question on both sides (paper: eval queries disjoint from training).

Records are grouped by normalised question and by adversarial `anchor_of` links (a forget record and its
prefilled twin stay together); groups are shuffled with the seed and assigned per objective so each
objective gets about the requested eval share.
"""

from __future__ import annotations

import random

from ..errors import MuleError
from .text import normalize_question


def parse_split(spec: str) -> float:
    """'eval=0.2' or '0.2' -> 0.2 (the eval share, strictly between 0 and 1)."""
    text = spec.strip()
    if "=" in text:
        name, _, text = text.partition("=")
        if name.strip() != "eval":
            raise MuleError(f"--split {spec!r}: expected eval=FRACTION, e.g. eval=0.2")
    try:
        frac = float(text)
    except ValueError:
        raise MuleError(f"--split {spec!r}: {text!r} is not a number") from None
    if not 0.0 < frac < 1.0:
        raise MuleError(f"--split {spec!r}: the eval share must be between 0 and 1")
    return frac


def _groups(records: list[dict]) -> list[list[int]]:
    parent = list(range(len(records)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_by_q, index_of = {}, {r["id"]: i for i, r in enumerate(records)}
    for i, r in enumerate(records):
        key = normalize_question(r["question"])
        if key in first_by_q:
            parent[find(i)] = find(first_by_q[key])
        else:
            first_by_q[key] = i
        if r["objective"] == "adversarial" and r.get("anchor_of") in index_of:
            parent[find(i)] = find(index_of[r["anchor_of"]])
    groups: dict[int, list[int]] = {}
    for i in range(len(records)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def split_records(records: list[dict], eval_share: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, eval), both in input order; an objective with >= 2 groups gets at least one of each side."""
    groups = _groups(records)
    by_obj: dict[str, list[list[int]]] = {}
    for g in groups:
        by_obj.setdefault(records[g[0]]["objective"], []).append(g)
    rng = random.Random(seed)
    to_eval: set[int] = set()
    for obj in sorted(by_obj):
        gs = sorted(by_obj[obj], key=lambda g: normalize_question(records[g[0]]["question"]))
        rng.shuffle(gs)
        total = sum(len(g) for g in gs)
        want = round(total * eval_share)
        if len(gs) >= 2:
            want = max(want, 1)
        taken = 0
        for k, g in enumerate(gs):
            if taken >= want or (len(gs) >= 2 and k == len(gs) - 1 and taken > 0):
                break
            to_eval.update(g)
            taken += len(g)
    train = [r for i, r in enumerate(records) if i not in to_eval]
    evals = [r for i, r in enumerate(records) if i in to_eval]
    return train, evals


def split_paths(output: str) -> tuple[str, str]:
    """out.jsonl -> (out.train.jsonl, out.eval.jsonl); a name without suffix gets .train.jsonl/.eval.jsonl."""
    from pathlib import Path

    p = Path(output)
    suffix = p.suffix or ".jsonl"
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return str(p.with_name(f"{stem}.train{suffix}")), str(p.with_name(f"{stem}.eval{suffix}"))
