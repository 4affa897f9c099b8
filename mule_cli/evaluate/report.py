"""Side-by-side reports of an EvalResult: a plain-text table (stdout), Markdown and JSON.

Arrows compare each model with the base in the metric's own direction: ↑ = better than the base,
↓ = worse, = same (within 0.005), so "Forget 9.1 ↑" means forgetting improved (the value fell).
"""

from __future__ import annotations

from ..atomic import write_json, write_text
from .metrics import METRICS

ABSENT = "—"
LEGEND = ("↑/↓ = better/worse than the base in the metric's direction (lower is better for Forget, "
          "neighbour refusal picks and ASR); — = absent (no records). Metrics in %, overall in points: "
          "Σ(base−x) over Forget, ASR + Σ(x−base) over Retain, Neighbour acc, MMLU; absent terms left out.")


def _visible_metrics(models: list[dict]):
    """All SPEC metrics always; the extra neighbour ROUGE only when some model has it."""
    return [m for m in METRICS if m.key != "neighbor_rouge" or any(r.get(m.key) is not None for r in models)]


def arrow(metric, value, base_value) -> str:
    if value is None or base_value is None or metric.key == "overall":
        return ""
    diff = value - base_value
    if abs(diff) < 0.005:
        return "="
    better = diff < 0 if metric.lower_is_better else diff > 0
    return "↑" if better else "↓"


def _cells(result) -> tuple[list[str], list[list[str]]]:
    base = next(r for r in result.models if r["model"] == result.base)
    header = ["metric", "better"] + [r["model"] + (" (base)" if r["model"] == result.base else "")
                                     for r in result.models]
    rows = []
    for metric in _visible_metrics(result.models):
        line = [metric.label, "lower" if metric.lower_is_better else "higher"]
        for r in result.models:
            value = r.get(metric.key)
            if value is None:
                line.append(ABSENT)
                continue
            mark = "" if r["model"] == result.base else arrow(metric, value, base.get(metric.key))
            line.append(f"{value:.2f}" + (f" {mark}" if mark else ""))
        rows.append(line)
    counts = ["records f/r/n/a/mmlu", ""]
    for r in result.models:
        counts.append("/".join(str(r[k]) for k in ("n_forget", "n_retain", "n_neighbor", "n_adversarial", "n_mmlu")))
    rows.append(counts)
    return header, rows


def format_table(result) -> str:
    header, rows = _cells(result)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    def fmt(row):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    lines = [fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows), "", LEGEND, *result.notes]
    return "\n".join(lines) + "\n"


def format_markdown(result) -> str:
    header, rows = _cells(result)
    def esc(c):
        return c.replace("|", "\\|")
    out = ["| " + " | ".join(map(esc, header)) + " |",
           "|" + "|".join([":---", ":---"] + ["---:"] * (len(header) - 2)) + "|"]
    out += ["| " + " | ".join(map(esc, row)) + " |" for row in rows]
    out += ["", LEGEND, *(f"\n{n}" for n in result.notes)]
    return "# mule evaluate\n\n" + "\n".join(out) + "\n"


def write_reports(result, *, json_path=None, markdown_path=None, records_path=None, plot_path=None) -> None:
    """Write every requested output atomically (temp file + rename)."""
    if json_path:
        write_json(json_path, result.to_json())
    if markdown_path:
        write_text(markdown_path, format_markdown(result))
    if records_path:
        import json

        write_text(records_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.records))
    if plot_path:
        from .radar import plot_radar

        plot_radar(result, plot_path)
