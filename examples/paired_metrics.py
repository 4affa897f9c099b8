"""Every metric's paired difference between two settings, over seeds × records, per domain and pooled.
Why: a default changes when a metric moves beyond its interval with no loss beyond interval elsewhere
(RESULTS.md, "Defaults"); seed_means.py pairs only the overall score. A domain is two record sources, A
then B (as seed_means.py takes them: FILE[:NAME,OLD=NEW]; each source picks one setting, at any number of
seeds). With several domains, "pooled" is the mean of the domains' differences, each domain resampled
on its own (its records and seeds), so a small gain that repeats across domains can resolve. Robustness
attacks (`--attacks`) that both settings have at every seed get rows of their own ("quant4 forget_rouge").
Usage: python examples/paired_metrics.py A1 B1 [A2 B2 ...] [--bootstrap N] [--seed S] [--no-mmlu]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mule_cli.evaluate import pooled as P
from mule_cli.evaluate.attacks import metric_defs
from mule_cli.evaluate.bootstrap import draw, interval, resampled
from mule_cli.evaluate.metrics import point_values
from seed_means import parse_source, read_records

SHOWN = ("forget_rouge", "retain_rouge", "retain_rouge_f1", "neighbor_acc", "neighbor_refusal", "asr", "asr_search",
         "asr_own", "mmlu", "overall")


def setting_runs(arg: str, no_mmlu: bool = False) -> tuple[list[dict], dict, list[list[dict]], list[dict]]:
    """(the file's base rows, the base's rows by attack, one row list per seed of the one setting the source
    picks, that seed's rows by attack)."""
    path, wanted = parse_source(arg)
    rows = [r for r in read_records(path) if not (no_mmlu and r["objective"] == "mmlu")]
    base, by_model = P.split_rows(rows)
    models = [m for m in by_model if m != base and (wanted is None or P.method_name(m) in wanted)]
    if not models:
        raise SystemExit(f"{arg}: no such setting in the file")
    return by_model[base], P.attack_rows(rows, base), [by_model[m] for m in models], \
        [P.attack_rows(rows, m) for m in models]


def domain_differences(a: str, b: str, n: int, seed: int, no_mmlu: bool = False) -> tuple[dict, dict]:
    """({metric: A's mean − B's mean}, {metric: the paired resamples of that difference})."""
    base_rows, base_attacks, runs_a, attacks_a = setting_runs(a, no_mmlu)
    base_rows_b, _, runs_b, attacks_b = setting_runs(b, no_mmlu)
    try:
        P.check_same_base(b, base_rows_b, a, base_rows)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    draws = draw(base_rows, n, seed)
    base_point, base_samples = P.summary(base_rows), resampled(base_rows, draws)
    base_point["overall"], base_samples["overall"] = 0.0, np.zeros(n)
    rng = np.random.default_rng(seed + 1)
    seeds = max(len(runs_a), len(runs_b))
    picks = rng.integers(0, seeds, size=(n, seeds))  # shared seed draws: seed i of A pairs with seed i of B
    mean_a, pooled_a = P.pooled_metrics(runs_a, draws, picks % len(runs_a), base_point, base_samples)
    mean_b, pooled_b = P.pooled_metrics(runs_b, draws, picks % len(runs_b), base_point, base_samples)
    keys = [k for k in SHOWN if k in pooled_a and k in pooled_b]
    points = {k: mean_a[k] - mean_b[k] for k in keys}
    samples = {k: pooled_a[k] - pooled_b[k] for k in keys}
    both = set(base_attacks).intersection(*attacks_a, *attacks_b)  # attacks every seed of A and B has
    for attack in sorted(both):
        defs, rows = metric_defs(attack), base_attacks[attack]
        attack_draws = draw(rows, n, seed)
        point, sample = point_values(rows, defs), resampled(rows, attack_draws, defs)
        m_a, p_a = P.pooled_metrics([s[attack] for s in attacks_a], attack_draws, picks % len(runs_a), point,
                                     sample, defs)
        m_b, p_b = P.pooled_metrics([s[attack] for s in attacks_b], attack_draws, picks % len(runs_b), point,
                                     sample, defs)
        for k in (k for k in defs if k in p_a and k in p_b):
            points[f"{attack} {k}"], samples[f"{attack} {k}"] = m_a[k] - m_b[k], p_a[k] - p_b[k]
    return points, samples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="+", help="A B per domain: FILE[:NAME,OLD=NEW] each")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-mmlu", action="store_true", help="leave the MMLU rows out (to pair a file evaluated "
                    "without MMLU with one evaluated with it)")
    args = ap.parse_args(argv)
    if len(args.sources) % 2:
        raise SystemExit("give the sources in pairs: A B per domain")
    pairs = list(zip(args.sources[::2], args.sources[1::2]))
    domains = [domain_differences(a, b, args.bootstrap, args.seed, args.no_mmlu) for a, b in pairs]
    names = [Path(parse_source(a)[0]).name for a, _ in pairs] + (["pooled"] if len(pairs) > 1 else [])
    print("| metric | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for key in [k for k in domains[0][0] if all(k in d for d, _ in domains)]:
        cells = [(d[key], s[key]) for d, s in domains]
        if len(domains) > 1:
            cells.append((float(np.mean([d for d, _ in cells])), np.mean([s for _, s in cells], axis=0)))
        print(f"| {key} | " + " | ".join(f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                                         for d, (lo, hi) in ((d, interval(s)) for d, s in cells)) + " |")
    print("\nA − B, mean over seeds [95% paired bootstrap interval over seeds × records].")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
