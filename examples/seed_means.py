"""Pool several seeds of each method into one table with 95% intervals over seeds × records.

Why: on these eval sets the batch order alone moves a method's overall score by tens of points, and the
records by several more; RESULTS.md ranks methods by this table, and calls a difference real only when
its paired interval (last table) excludes 0. Input: the per-record files of `mule evaluate --records`,
one per seed, each with the base's rows (the base is the file's first model); every file must hold the
same base rows (same eval files, MMLU sample and base model).
A row is keyed by its method name (the folder above `model/`, e.g. runs/results/harry_potter-seed1/npo/model
-> npo; a trailing _s1 / -seed1 is dropped), or the model string itself.

Usage: python examples/seed_means.py RECORDS.jsonl[.gz][:NAME,OLD=NEW,...] ... [--bootstrap N] [--seed S]
       [--markdown OUT.md] [--json OUT.json] [--plot OUT.png [--plot-only NAME,...]]
(`:NAME,...` keeps only those methods of that file; OLD=NEW keeps OLD and shows it as NEW, so runs of one
setting pool under one name and runs of another setting under another, even when their folders share a name.)
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from mule_cli.evaluate.metrics import BY_KEY

SHORT_NAMES = {"forget_rouge": "Forget", "forget_refusal": "Declined", "retain_rouge": "Retain",
               "neighbor_acc": "Nbr acc", "neighbor_refusal": "Nbr refusal", "asr": "ASR", "asr_search": "ASR search",
               "asr_own": "ASR own", "mmlu": "MMLU", "overall": "Overall"}
METRICS = [(k, f"{name} {'↓' if BY_KEY[k].lower_is_better else '↑'}") for k, name in SHORT_NAMES.items()]


def parse_source(arg: str) -> tuple[str, dict[str, str] | None]:
    """'f.jsonl:npo,best8=ours' -> ('f.jsonl', {'npo': 'npo', 'best8': 'ours'}); 'f.jsonl' -> ('f.jsonl', None)."""
    path, sep, names = arg.rpartition(":")
    if not sep or names.endswith((".json", ".jsonl", ".gz")):
        return arg, None
    pairs = [n.split("=", 1) if "=" in n else (n, n) for n in names.split(",") if n]
    return path, {old: new for old, new in pairs}


def read_records(path: str) -> list[dict]:
    """The rows of a `mule evaluate --records` file, plain or gzipped."""
    from mule_cli.records import display_name

    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise SystemExit(f"{display_name(path)}: no such file") from None
    text = (gzip.decompress(raw) if path.endswith(".gz") else raw).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def cell(row: dict, key: str) -> str:
    value, ci = row.get(key), row.get(f"{key}_ci")
    if value is None:
        return "–"
    return f"{value:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{value:.1f}"


ATTACK_KEYS = ("forget_rouge", "asr", "asr_search", "asr_own", "retain_rouge")
ATTACK_ONLY = [("forget_rouge_before", "Forget before ↓"), ("forget_rouge_after", "Forget after ↓"),
               ("leak_rate", "Leak rate ↓")]  # relearn's and templates' metrics


def attack_tables(pooled) -> list[str]:
    """One table per robustness attack: the base and every method that has it at every seed."""
    lines = []
    for attack in sorted(pooled.base.get("attacks", {})):
        rows = [(name, row) for name, row in pooled.methods.items() if attack in row.get("attacks", {})]
        base = pooled.base["attacks"][attack]
        keys = [(k, name) for k, name in [*METRICS, *ATTACK_ONLY] if k in (*ATTACK_KEYS, *dict(ATTACK_ONLY))
                and (base.get(k) is not None or any(r["attacks"][attack].get(k) is not None for _, r in rows))]
        lines += [f"| under {attack} | seeds | " + " | ".join(name for _, name in keys) + " |",
                  "|---|---:|" + "---:|" * len(keys), "| base | – | " + " | ".join(cell(base, k) for k, _ in keys) + " |"]
        lines += [f"| {name} | {row['seeds']} | " + " | ".join(cell(row["attacks"][attack], k) for k, _ in keys) + " |"
                  for name, row in rows]
        lines.append("")
    return lines


def table(pooled) -> str:
    keys = [(k, name) for k, name in METRICS
            if pooled.base.get(k) is not None or any(r.get(k) is not None for r in pooled.methods.values())]
    lines = ["| method | seeds | " + " | ".join(name for _, name in keys) + " |", "|---|---:|" + "---:|" * len(keys),
             "| base | – | " + " | ".join(cell(pooled.base, k) for k, _ in keys) + " |"]
    for name, row in sorted(pooled.methods.items(), key=lambda kv: -(kv[1]["overall"] or float("-inf"))):
        lines.append(f"| {name} | {row['seeds']} | " + " | ".join(cell(row, k) for k, _ in keys) + " |")
    lines += ["", "cells: mean over seeds [95% bootstrap interval over seeds × records].", ""]
    lines += attack_tables(pooled)
    if pooled.pairs:
        lines += ["| method a | method b | overall a − b [95% paired] |", "|---|---|---:|"]
        lines += [f"| {p['a']} | {p['b']} | {p['diff']:+.1f} [{p['ci'][0]:.1f}, {p['ci'][1]:.1f}] |"
                  for p in pooled.pairs]
        lines += ["", "a difference whose interval contains 0 is not resolved by these seeds and records.", ""]
    return "\n".join(lines)


def plot(pooled, path: str, only: set | None) -> None:
    """The radar chart of `mule evaluate --plot`, drawn from the per-method means."""
    from types import SimpleNamespace

    from mule_cli.evaluate.radar import plot_radar

    models = [pooled.base] + [{"model": n, **r} for n, r in pooled.methods.items() if only is None or n in only]
    plot_radar(SimpleNamespace(models=models, base=pooled.base["model"]), path)


def main(argv: list[str] | None = None) -> int:
    from mule_cli.evaluate.pooled import pool_seeds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="+", help="per-record files written by `mule evaluate --records`, each "
                    "optionally followed by :NAME,OLD=NEW,... (take only those methods from it)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="resamples (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--json", help="also write the pooled numbers (with every interval) as JSON")
    ap.add_argument("--plot", help="also draw the radar chart of the means to this PNG")
    ap.add_argument("--plot-only", metavar="NAME,NAME", help="draw only these rows (shown names; the base always)")
    args = ap.parse_args(argv)
    sources = [parse_source(a) for a in args.records]
    files = [(path, read_records(path)) for path, _ in sources]
    try:
        pooled = pool_seeds(files, n=args.bootstrap, seed=args.seed, rename=[k for _, k in sources])
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    only = set(args.plot_only.split(",")) if args.plot_only else None
    if only and only - set(pooled.methods):  # checked before anything is written
        raise SystemExit(f"--plot-only: no row named {', '.join(sorted(only - set(pooled.methods)))}")
    text = table(pooled)
    sys.stdout.write(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps({"base": pooled.base, "methods": pooled.methods, "pairs": pooled.pairs},
                                              indent=1), encoding="utf-8")
    if args.plot:
        plot(pooled, args.plot, only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
