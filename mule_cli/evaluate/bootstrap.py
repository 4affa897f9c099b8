"""Percentile-bootstrap 95% intervals for every metric, paired across models (SPEC §5, "Intervals").

Why: on eval sets of tens of questions one record moves a metric by several points, so a difference
between two settings means something only when it is larger than what resampling the same questions
produces. Records are resampled within their stratum (the objective; adversarial records also by prefill
family, neighbour MCQs apart from neighbour generations), and the *same* draws are applied to every
model of a call: the interval of a difference (from the base, or between two models) is paired, so the
questions' own difficulty cancels and only the models differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np

from .metrics import OVERALL_TERMS, PER_RECORD

LEVEL = 95.0


def stratum(row: Mapping) -> str:
    """The group a record is resampled within: its objective, refined where metrics use a subset."""
    key = row["objective"]
    if key == "adversarial":
        key += f":{row.get('prefill_family') or 'other'}"
    if "picked" in row and key == "neighbor":
        key += ":mcq"
    return key


@dataclass
class Draws:
    """How often each record is drawn in each resample: weights[stratum] is [n_resamples, n_records]."""

    ids: dict[str, list[str]]
    weights: dict[str, np.ndarray]
    n: int


def draw(rows: Sequence[Mapping], n: int, seed: int = 0) -> Draws:
    """`n` resamples of `rows` with replacement within each stratum, seeded (same seed, same draws)."""
    ids: dict[str, list[str]] = {}
    for row in rows:
        ids.setdefault(stratum(row), []).append(row["id"])
    rng = np.random.default_rng(seed)
    weights = {key: rng.multinomial(len(ids[key]), np.full(len(ids[key]), 1.0 / len(ids[key])), size=n)
               .astype(np.float64) for key in sorted(ids)}
    return Draws(ids=ids, weights=weights, n=n)


def resampled(rows: Sequence[Mapping], draws: Draws, defs: Mapping = PER_RECORD) -> dict[str, np.ndarray]:
    """Each metric of `defs` ({key: (select, value)}) on every resample, in percent; NaN where a resample
    holds no record the metric selects. `rows` must hold the drawn records in the drawn order."""
    groups: dict[str, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(stratum(row), []).append(row)
    for key, group in groups.items():
        if [r["id"] for r in group] != draws.ids.get(key):
            raise ValueError(f"bootstrap: the {key} records differ from the drawn ones (models must be "
                             "evaluated on the same records in the same order)")
    out = {}
    for key, (select, value) in defs.items():
        num, den = np.zeros(draws.n), np.zeros(draws.n)
        for name, weights in draws.weights.items():
            group = groups.get(name, [])
            picked = np.array([1.0 if select(r) else 0.0 for r in group])
            if not group or not picked.any():
                continue
            values = np.array([float(value(r)) if select(r) else 0.0 for r in group])
            num += weights @ values
            den += weights @ picked
        with np.errstate(invalid="ignore", divide="ignore"):
            out[key] = np.where(den > 0, 100.0 * num / np.where(den > 0, den, 1.0), np.nan)
    return out


def interval(samples: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The percentile interval of the finite samples, rounded like the metrics; None when there are none."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    tail = (100.0 - level) / 2
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return [round(float(lo), 4), round(float(hi), 4)]


def overall_samples(base: Mapping[str, np.ndarray], model: Mapping[str, np.ndarray], terms) -> np.ndarray:
    """The overall score (SPEC §5) on every resample, over the same terms the point estimate used."""
    total = np.zeros_like(next(iter(base.values())))
    for key in terms:
        total = total + OVERALL_TERMS[key] * (model[key] - base[key])
    return total


def add_intervals(models: list[dict], rows_by_model: Mapping[str, Sequence[Mapping]], base: str, n: int,
                  seed: int = 0, defs: Mapping = PER_RECORD, with_overall: bool = True) -> list[dict]:
    """Write `K_ci` (and, for non-base rows, the paired `K_delta_ci`) beside every present metric K of each
    row of `models` (dicts with "model" and the point metrics), plus `overall_ci`; return the paired
    overall-difference interval of every two non-base rows as [{"a", "b", "diff", "ci"}]."""
    draws = draw(rows_by_model[base], n, seed)
    samples = {row["model"]: resampled(rows_by_model[row["model"]], draws, defs) for row in models}
    base_row = next(row for row in models if row["model"] == base)
    overall = {}
    for row in models:
        own, ref = samples[row["model"]], samples[base]
        for key in defs:
            if row.get(key) is None:
                continue
            row[f"{key}_ci"] = interval(own[key])
            if row["model"] != base and base_row.get(key) is not None:
                row[f"{key}_delta_ci"] = interval(own[key] - ref[key])
        if with_overall and row.get("overall") is not None:
            terms = [k for k in OVERALL_TERMS if row.get(k) is not None and base_row.get(k) is not None]
            overall[row["model"]] = overall_samples(ref, own, terms)
            row["overall_ci"] = interval(overall[row["model"]])
    pairs = []
    for a, b in combinations([row for row in models if row["model"] in overall and row["model"] != base], 2):
        pairs.append({"a": a["model"], "b": b["model"], "diff": round(a["overall"] - b["overall"], 4),
                      "ci": interval(overall[a["model"]] - overall[b["model"]])})
    return pairs
