"""Bootstrap intervals of `mule evaluate` on hand-made per-record rows (no model needed)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mule_cli.evaluate.bootstrap import add_intervals, draw, interval, resampled
from mule_cli.evaluate.runner import summarize


def forget_rows(values, prefix="f"):
    return [{"id": f"{prefix}{i}", "objective": "forget", "generation": "x", "rouge_recall": v, "rouge_f1": v}
            for i, v in enumerate(values)]


def rows_model(name, rows, base_rows=None):
    metrics = summarize(rows)
    if base_rows is not None:
        from mule_cli.evaluate.metrics import overall_score

        metrics["overall"] = overall_score(summarize(base_rows), metrics)
    else:
        metrics["overall"] = 0.0
    return {"model": name, **metrics}


def test_constant_metric_has_a_point_interval():
    rows = forget_rows([0.25] * 17)
    models = [rows_model("base", rows)]
    add_intervals(models, {"base": rows}, "base", n=500, seed=3)
    assert models[0]["forget_rouge_ci"] == [25.0, 25.0]
    assert models[0]["forget_rouge_f1_ci"] == [25.0, 25.0]
    assert "retain_rouge_ci" not in models[0]  # absent metric: no interval


def test_interval_covers_the_true_mean_in_at_least_90_of_100_repetitions():
    covered = 0
    for rep in range(100):
        rng = random.Random(rep)
        values = [1.0 if rng.random() < 0.3 else 0.0 for _ in range(60)]
        rows = forget_rows(values)
        samples = resampled(rows, draw(rows, 1000, seed=rep))
        lo, hi = interval(samples["forget_rouge"])
        covered += lo <= 30.0 <= hi
    assert covered >= 90, covered


def test_paired_difference_is_tight_when_every_record_moves_alike():
    rng = random.Random(0)
    base_values = [0.1 + 0.9 * rng.random() for _ in range(40)]
    base = forget_rows(base_values)
    model = forget_rows([v - 0.1 for v in base_values])
    models = [rows_model("base", base), rows_model("m", model, base)]
    add_intervals(models, {"base": base, "m": model}, "base", n=1000, seed=0)
    lo, hi = models[1]["forget_rouge_delta_ci"]
    assert lo == pytest.approx(-10.0, abs=1e-6) and hi == pytest.approx(-10.0, abs=1e-6)
    # the unpaired intervals are wide and overlap: only pairing shows the difference
    assert models[1]["forget_rouge_ci"][1] > models[0]["forget_rouge_ci"][0]
    # overall = base − x over Forget: +10 on every resample
    assert models[1]["overall_ci"] == [pytest.approx(10.0, abs=1e-6)] * 2


def test_pairs_give_the_paired_overall_difference_of_every_two_models():
    base = forget_rows([0.5] * 10)
    a = forget_rows([0.2] * 10)
    b = forget_rows([0.4] * 5 + [0.0] * 5)
    models = [rows_model("base", base), rows_model("a", a, base), rows_model("b", b, base)]
    pairs = add_intervals(models, {"base": base, "a": a, "b": b}, "base", n=400, seed=1)
    assert [(p["a"], p["b"]) for p in pairs] == [("a", "b")]
    assert pairs[0]["diff"] == pytest.approx(models[1]["overall"] - models[2]["overall"])
    lo, hi = pairs[0]["ci"]
    assert lo < pairs[0]["diff"] < hi and lo < 0 < hi  # a's 30 vs b's 30: a difference of 0 is inside


def test_records_are_resampled_within_their_stratum():
    rows = forget_rows([1.0] * 3) + [
        {"id": f"a{i}", "objective": "adversarial", "generation": "x", "rouge_recall": 0.0, "rouge_f1": 0.0,
         "attack_success": i % 2 == 0, "prefill_family": "own" if i < 4 else "search"} for i in range(10)]
    d = draw(rows, 200, seed=0)
    assert set(d.weights) == {"forget", "adversarial:own", "adversarial:search"}
    for key, weights in d.weights.items():
        assert (weights.sum(axis=1) == len(d.ids[key])).all()  # every resample keeps each stratum's size
    samples = resampled(rows, d)
    assert np.all(samples["forget_rouge"] == 100.0)
    assert summarize(rows)["asr_own"] == 50.0 and summarize(rows)["asr_search"] == 50.0


def test_same_seed_same_interval_and_mismatched_records_are_refused():
    rng = random.Random(1)
    rows = forget_rows([rng.random() for _ in range(30)])
    a = interval(resampled(rows, draw(rows, 300, seed=5))["forget_rouge"])
    assert a == interval(resampled(rows, draw(rows, 300, seed=5))["forget_rouge"])
    assert a != interval(resampled(rows, draw(rows, 300, seed=6))["forget_rouge"])
    with pytest.raises(ValueError, match="same records"):
        resampled(forget_rows([0.0] * 30, prefix="g"), draw(rows, 10))
