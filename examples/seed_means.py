"""Mean and range of each method's metrics over several `mule evaluate --json` reports (one per seed).

Why: on the small eval split the batch order alone moves a method's overall score by tens of points,
so a single-seed table cannot rank methods; this pools the seeds into one table.
A row is keyed by its method name (the folder above `model/`, e.g. runs/results/harry_potter-seed1/npo/model
-> npo; a trailing _s1 / -seed1 is dropped), or the model string itself. Every report must have the same
base numbers (same eval files and MMLU sample).

Usage: python examples/seed_means.py REPORT.json[:NAME,OLD=NEW,...] ... [--markdown OUT.md] [--plot OUT.png [--plot-only NAME,...]]
(`:NAME,...` keeps only those methods of that report; OLD=NEW keeps OLD and shows it as NEW, so runs of one
setting pool under one name and runs of another setting under another, even when their folders share a name.)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from statistics import mean

from mule_cli.evaluate.metrics import BY_KEY  # torch-free: the directions live there

SHORT_NAMES = {"forget_rouge": "Forget", "retain_rouge": "Retain", "neighbor_acc": "Nbr acc",
               "neighbor_refusal": "Nbr refusal", "asr": "ASR", "mmlu": "MMLU", "overall": "Overall"}
METRICS = [(k, f"{name} {'↓' if BY_KEY[k].lower_is_better else '↑'}") for k, name in SHORT_NAMES.items()]
BASE_KEYS = [k for k, _ in METRICS if k != "overall"]


def method_name(model: str) -> str:
    p = Path(model)
    name = p.parent.name if p.name == "model" else model
    return re.sub(r"[_-]s(eed)?\d+$", "", name)  # npo_s1, npo-seed1 -> npo


def parse_source(arg: str) -> tuple[str, dict[str, str] | None]:
    """'f.json:npo,best8=ours' -> ('f.json', {'npo': 'npo', 'best8': 'ours'}); 'f.json' -> ('f.json', None)."""
    path, sep, names = arg.rpartition(":")
    if not sep or names.endswith(".json"):
        return arg, None
    pairs = [n.split("=", 1) if "=" in n else (n, n) for n in names.split(",") if n]
    return path, {old: new for old, new in pairs}


def pool(reports: list[dict], sources: list[str], keep: list[dict[str, str] | None] | None = None
         ) -> tuple[dict, dict[str, list[dict]]]:
    """(base row, {method: [row per report]}); refuses reports whose base rows differ.
    keep[i]: {method name: shown name} to take from report i (None = all, under their own names)."""
    keep = keep or [None] * len(reports)

    def base_row(rep: dict) -> dict:
        return next(r for r in rep["models"] if r["model"] == rep["base"])

    base = base_row(reports[0])
    rows: dict[str, list[dict]] = {}
    for rep, src, wanted in zip(reports, sources, keep):
        if any(base_row(rep).get(k) != base.get(k) for k in BASE_KEYS):
            raise SystemExit(f"{src}: its base row differs from {sources[0]}'s (different eval files or MMLU sample)")
        found = set()
        for row in rep["models"]:
            name = method_name(row["model"])
            if row["model"] == rep["base"] or (wanted is not None and name not in wanted):
                continue
            found.add(name)
            rows.setdefault(wanted[name] if wanted else name, []).append(row)
        if wanted is not None and set(wanted) - found:
            raise SystemExit(f"{src}: no method named {', '.join(sorted(set(wanted) - found))}")
    return base, rows


def cell(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{mean(vals):.1f} ({min(vals):.1f}–{max(vals):.1f})"


def table(base: dict, rows: dict[str, list[dict]]) -> str:
    head = "| method | seeds | " + " | ".join(name for _, name in METRICS) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(METRICS),
             "| base | – | " + " | ".join(cell([base.get(k, 0.0)]) for k, _ in METRICS) + " |"]
    for name, rs in sorted(rows.items(), key=lambda kv: -mean(r["overall"] for r in kv[1])):
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cell([r.get(k) for r in rs]) for k, _ in METRICS) + " |")
    return "\n".join(lines) + "\n\ncells: mean over seeds (min–max).\n"


def plot(base: dict, rows: dict[str, list[dict]], path: str) -> None:
    """The radar chart of `mule evaluate --plot`, drawn from the per-method means."""
    from types import SimpleNamespace

    from mule_cli.evaluate.radar import plot_radar

    def mean_row(name, rs):
        return {"model": name, **{k: mean(r[k] for r in rs) for k, _ in METRICS if all(r.get(k) is not None for r in rs)}}

    models = [base] + [mean_row(n, rs) for n, rs in rows.items()]
    plot_radar(SimpleNamespace(models=models, base=base["model"]), path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="eval JSON files written by `mule evaluate --json`, each "
                    "optionally followed by :NAME,OLD=NEW,... (take only those methods from it)")
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--plot", help="also draw the radar chart of the means to this PNG")
    ap.add_argument("--plot-only", metavar="NAME,NAME", help="draw only these rows (shown names; the base always)")
    args = ap.parse_args(argv)
    sources = [parse_source(a) for a in args.reports]
    reports = [json.loads(Path(p).read_text(encoding="utf-8")) for p, _ in sources]
    base, rows = pool(reports, [p for p, _ in sources], [k for _, k in sources])
    only = set(args.plot_only.split(",")) if args.plot_only else None
    if only and only - set(rows):  # checked before anything is written
        raise SystemExit(f"--plot-only: no row named {', '.join(sorted(only - set(rows)))}")
    text = table(base, rows)
    sys.stdout.write(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.plot:
        plot(base, {n: rs for n, rs in rows.items() if only is None or n in only}, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
