"""Pool several seeds of the same methods into one table, with 95% intervals over seeds × records.

Why: the batch order alone moves a trained method's score by tens of points, and the eval records by
several more; a ranking needs both sources of noise in its interval. Each resample draws records within
their stratum (the same draws for every method and seed, so differences are paired) and, per method, the
seeds with replacement (the same seed draws for methods with as many seeds). Input: the per-record rows
that `mule evaluate --records` writes, one file per seed, each with the base model's rows. Rows of a
robustness attack (`--attacks`) pool the same way under `attacks`, for the methods that have them at every
seed, with that attack's own metrics and records (relearn measures half the forget records), drawn as
`mule evaluate` draws them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np

from .attacks import metric_defs
from .bootstrap import draw, interval, overall_samples, resampled
from .metrics import OVERALL_TERMS, PER_RECORD, overall_score, point_values

KEYS = (*PER_RECORD, "overall")


def method_name(model: str) -> str:
    """`runs/results/hp-seed1/npo/model` -> `npo`; a trailing _s1 / -seed1 is dropped; other names stay."""
    p = Path(model)
    name = p.parent.name if p.name == "model" else model
    return re.sub(r"[_-]s(eed)?\d+$", "", name)


@dataclass
class Pooled:
    base: dict  # the base's metrics (+ _ci)
    methods: dict[str, dict] = field(default_factory=dict)  # name -> metrics (+ _ci, _delta_ci), "seeds": S,
    # "attacks": {attack: metrics (+ _ci, _delta_ci against the base under the same attack)}
    pairs: list[dict] = field(default_factory=list)  # paired overall differences of every two methods


def summary(rows: Sequence[dict]) -> dict:
    from .runner import summarize

    return summarize(rows, has_mmlu=any(r["objective"] == "mmlu" for r in rows))


def split_rows(rows: Sequence[dict]) -> tuple[str, dict[str, list[dict]]]:
    """(base name, {model: its rows}) of one records file; the base is the file's first model (evaluate
    writes the base first); attack rows are left out (`attack_rows`)."""
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        if not row.get("attack"):
            by_model.setdefault(row["model"], []).append(row)
    if not by_model:
        raise ValueError("no evaluation rows")
    return next(iter(by_model)), by_model


def pooled_metrics(seeds: Sequence[list[dict]], draws, picks, base_point: dict, base_samples: dict,
                    defs: dict | None = None) -> tuple[dict, dict]:
    """(the mean over seeds of each metric with its pooled interval and paired delta interval, the pooled
    resamples by key) for one method's per-seed rows; `defs`: an attack's metrics instead of the evaluation's
    (and no overall score)."""
    points, samples = [], []
    keys = KEYS if defs is None else tuple(defs)
    for rows in seeds:
        if defs is None:
            point, sample = summary(rows), resampled(rows, draws)
            terms = [k for k in OVERALL_TERMS if point.get(k) is not None and base_point.get(k) is not None]
            point["overall"] = overall_score(base_point, point)
            sample["overall"] = overall_samples(base_samples, sample, terms)
        else:
            point, sample = point_values(rows, defs), resampled(rows, draws, defs)
        points.append(point)
        samples.append(sample)
    row, pooled_by_key = {}, {}
    for key in keys:
        if any(p[key] is None for p in points):
            row[key] = None
            continue
        row[key] = round(float(np.mean([p[key] for p in points])), 4)
        stacked = np.stack([s[key] for s in samples])  # [seeds, resamples]
        pooled = stacked[picks, np.arange(draws.n)[:, None]].mean(axis=1)
        row[f"{key}_ci"] = interval(pooled)
        if key != "overall" and base_point[key] is not None:
            row[f"{key}_delta_ci"] = interval(pooled - base_samples[key])
        pooled_by_key[key] = pooled
    return row, pooled_by_key


def attack_rows(rows: Sequence[dict], model: str) -> dict[str, list[dict]]:
    """{attack name: the rows of `model` under that attack} of one records file."""
    out: dict[str, list[dict]] = {}
    for row in rows:
        if row["model"] == model and row.get("attack"):
            out.setdefault(row["attack"], []).append(row)
    return out


def check_same_base(source: str, rows: Sequence[dict], first: str, first_rows: Sequence[dict]) -> None:
    """Raise unless two files' base rows score the same records alike: pooled or paired, their runs are
    measured against one base."""
    def key(rs):
        return [(r["id"], r.get("rouge_recall"), r.get("picked")) for r in rs]
    if key(rows) != key(first_rows):
        raise ValueError(f"{source}: its base rows differ from {first}'s (different eval files, MMLU sample or "
                         "base model)")


def pool_seeds(seed_files: Sequence[tuple[str, Sequence[dict]]], n: int = 1000, seed: int = 0,
               rename: Sequence[dict | None] | None = None) -> Pooled:
    """Pool per-seed record files [(name, rows)]; rename[i] = {method: shown name} keeps only those methods
    of file i (None = all, under their own names). Files whose base rows differ are refused."""
    rename = rename or [None] * len(seed_files)
    base_name, first = split_rows(seed_files[0][1])
    base_rows = first[base_name]
    base_attacks = attack_rows(seed_files[0][1], base_name)
    runs: dict[str, list[list[dict]]] = {}
    attack_runs: dict[str, list[dict[str, list[dict]]]] = {}
    for (source, rows), wanted in zip(seed_files, rename):
        name, by_model = split_rows(rows)
        check_same_base(source, by_model[name], seed_files[0][0], base_rows)
        found = set()
        for model, model_rows in by_model.items():
            method = method_name(model)
            if model == name or (wanted is not None and method not in wanted):
                continue
            found.add(method)
            runs.setdefault(wanted[method] if wanted else method, []).append(model_rows)
            attack_runs.setdefault(wanted[method] if wanted else method, []).append(attack_rows(rows, model))
        if wanted is not None and set(wanted) - found:
            raise ValueError(f"{source}: no method named {', '.join(sorted(set(wanted) - found))}")

    draws = draw(base_rows, n, seed)
    base_point = summary(base_rows)
    base_samples = resampled(base_rows, draws)
    base_samples["overall"] = np.zeros(n)
    base_point["overall"] = 0.0
    out = Pooled(base={"model": base_name, **base_point})
    for key in PER_RECORD:
        if base_point[key] is not None:
            out.base[f"{key}_ci"] = interval(base_samples[key])
    base_under = {}  # attack -> (its draws, its metrics, the base's point values and resamples under it)
    for attack, rows in sorted(base_attacks.items()):
        defs, attack_draws = metric_defs(attack), draw(rows, n, seed)
        point, samples = point_values(rows, defs), resampled(rows, attack_draws, defs)
        base_under[attack] = (attack_draws, defs, point, samples)
        out.base.setdefault("attacks", {})[attack] = {
            **point, **{f"{k}_ci": interval(samples[k]) for k in defs if point[k] is not None}}
    rng = np.random.default_rng(seed + 1)
    seed_draws: dict[int, np.ndarray] = {}
    pooled_overall = {}
    for method, seeds in runs.items():
        picks = seed_draws.setdefault(len(seeds), rng.integers(0, len(seeds), size=(n, len(seeds))))
        metrics, pooled = pooled_metrics(seeds, draws, picks, base_point, base_samples)
        if "overall" in pooled:
            pooled_overall[method] = pooled["overall"]
        row = {"seeds": len(seeds), **metrics}
        attacks = {}
        for attack in sorted(set.intersection(*(set(a) for a in attack_runs[method])) & set(base_under)):
            attack_draws, defs, point, samples = base_under[attack]
            attacks[attack], _ = pooled_metrics([a[attack] for a in attack_runs[method]], attack_draws, picks,
                                                 point, samples, defs)
        if attacks:
            row["attacks"] = attacks
        out.methods[method] = row
    ranked = sorted(out.methods, key=lambda m: -(out.methods[m]["overall"] or float("-inf")))
    for a, b in combinations([m for m in ranked if m in pooled_overall], 2):
        out.pairs.append({"a": a, "b": b, "diff": round(out.methods[a]["overall"] - out.methods[b]["overall"], 4),
                          "ci": interval(pooled_overall[a] - pooled_overall[b])})
    return out
