"""Side-by-side reports of an EvalResult: a plain-text table (stdout), Markdown and JSON.

Arrows compare each model with the base in the metric's own direction: ↑ = better than the base,
↓ = worse, = same (within 0.005), so "Forget 9.1 ↑" means forgetting improved (the value fell).
"""

from __future__ import annotations

from ..atomic import write_json, write_text
from .attacks import ATTACKS, metric_defs
from .metrics import METRICS

ABSENT = "—"
LEGEND = ("↑/↓ = better/worse than the base in the metric's direction (lower is better for Forget, "
          "neighbour refusal picks and ASR); — = absent (no records). Metrics in %, overall in points: "
          "Σ(base−x) over Forget, ASR + Σ(x−base) over Retain, Neighbour acc, MMLU; absent terms left out. "
          "Forget declined = share of forget and adversarial answers whose first sentence declines (not in overall).")
CI_LEGEND = ("[lo, hi] = 95% percentile-bootstrap interval over records ({n} resamples within each objective, "
             "seed {seed}); the JSON report also has each model's paired interval of its difference from the base.")
OPTIONAL = ("neighbor_rouge", "asr_search", "asr_own", "forget_refusal")  # shown only when some model has them


def _visible_metrics(models: list[dict]):
    """All SPEC metrics always; the extras only when some model has them."""
    return [m for m in METRICS if m.key not in OPTIONAL or any(r.get(m.key) is not None for r in models)]


def _with_ci(text: str, ci) -> str:
    return f"{text} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else text


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
            line.append(_with_ci(f"{value:.2f}" + (f" {mark}" if mark else ""), r.get(f"{metric.key}_ci")))
        rows.append(line)
    counts = ["records f/r/n/a/mmlu", ""]
    for r in result.models:
        counts.append("/".join(str(r[k]) for k in ("n_forget", "n_retain", "n_neighbor", "n_adversarial", "n_mmlu")))
    rows.append(counts)
    return header, rows


def _pair_cells(result) -> tuple[list[str], list[list[str]]]:
    """Overall(a) − overall(b) for every two models, with its paired interval."""
    rows = [[p["a"], p["b"], _with_ci(f"{p['diff']:+.2f}", p["ci"])] for p in result.pairs]
    return ["model a", "model b", "overall a − b [95% paired]"], rows


def _attack_cells(result) -> tuple[list[str], list[list[str]]]:
    """One column per (attack, number), one row per model that was attacked."""
    attacked = [r for r in result.models if r.get("attacks")]
    names = [a for a in ATTACKS if any(a in r["attacks"] for r in attacked)]
    columns = [(a, key) for a in names for key in metric_defs(a)]
    header = ["model"] + [f"{a} {key}" for a, key in columns]
    rows = []
    for r in attacked:
        line = [r["model"]]
        for attack, key in columns:
            numbers = r["attacks"].get(attack)
            value = None if numbers is None else numbers.get(key)
            line.append(ABSENT if value is None else _with_ci(f"{value:.2f}", numbers.get(f"{key}_ci")))
        rows.append(line)
    return header, rows


def _text_table(header, rows) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    def fmt(row):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    return [fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)]


def _markdown_table(header, rows, left: int = 2) -> list[str]:
    def esc(c):
        return c.replace("|", "\\|")
    out = ["| " + " | ".join(map(esc, header)) + " |",
           "|" + "|".join([":---"] * left + ["---:"] * (len(header) - left)) + "|"]
    return out + ["| " + " | ".join(map(esc, row)) + " |" for row in rows]


def _legends(result) -> list[str]:
    out = [LEGEND]
    if result.bootstrap:
        out.append(CI_LEGEND.format(**result.bootstrap))
    return out + list(result.notes)


def format_table(result) -> str:
    lines = _text_table(*_cells(result))
    attacks = _attack_cells(result)
    if attacks[1]:
        lines += ["", "Robustness attacks (each on a copy of the model):", *_text_table(*attacks)]
    if result.pairs:
        lines += ["", "Paired overall differences:", *_text_table(*_pair_cells(result))]
    return "\n".join(lines + [""] + _legends(result)) + "\n"


def format_markdown(result) -> str:
    out = _markdown_table(*_cells(result))
    attacks = _attack_cells(result)
    if attacks[1]:
        out += ["", "## Robustness attacks", "", "Each on a copy of the model; intervals as above.", "",
                *_markdown_table(*attacks, left=1)]
    if result.pairs:
        out += ["", "## Paired overall differences", "",
                "Overall of model a minus overall of model b, with the 95% bootstrap interval of that difference "
                "(the same resampled records for both): a difference whose interval contains 0 is noise.", "",
                *_markdown_table(*_pair_cells(result))]
    out += ["", *("\n".join([""] + [legend]) for legend in _legends(result))]
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
