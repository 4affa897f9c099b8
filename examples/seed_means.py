"""Mean and range of each method's metrics over several `mule evaluate --json` reports (one per seed).

Why: on the small eval split the batch order alone moves a method's overall score by tens of points,
so a single-seed table cannot rank methods; this pools the seeds into one table.
A row is keyed by its method name (the folder above `model/`, e.g. runs/results/harry_potter-seed1/npo/model
-> npo; a trailing _s1 / -seed1 is dropped), or the model string itself. Every report must use the same base numbers (same eval files).

Usage: python examples/seed_means.py REPORT.json [REPORT.json ...] [--markdown OUT.md]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from statistics import mean

METRICS = [("forget_rouge", "Forget ↓"), ("retain_rouge", "Retain ↑"), ("neighbor_acc", "Nbr acc ↑"),
           ("neighbor_refusal", "Nbr refusal ↓"), ("asr", "ASR ↓"), ("mmlu", "MMLU ↑"), ("overall", "Overall ↑")]
BASE_KEYS = [k for k, _ in METRICS if k != "overall"]


def method_name(model: str) -> str:
    p = Path(model)
    name = p.parent.name if p.name == "model" else model
    return re.sub(r"[_-]s(eed)?\d+$", "", name)  # npo_s1, npo-seed1 -> npo


def pool(reports: list[dict], sources: list[str]) -> tuple[dict, dict[str, list[dict]]]:
    """(base row, {method: [row per report]}); refuses reports whose base rows differ."""
    def base_row(rep: dict) -> dict:
        return next(r for r in rep["models"] if r["model"] == rep["base"])

    base = base_row(reports[0])
    rows: dict[str, list[dict]] = {}
    for rep, src in zip(reports, sources):
        if any(base_row(rep).get(k) != base.get(k) for k in BASE_KEYS):
            raise SystemExit(f"{src}: its base row differs from {sources[0]}'s (different eval files or MMLU sample)")
        for row in rep["models"]:
            if row["model"] != rep["base"]:
                rows.setdefault(method_name(row["model"]), []).append(row)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="eval JSON files written by `mule evaluate --json`")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args(argv)
    reports = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.reports]
    text = table(*pool(reports, args.reports))
    sys.stdout.write(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
