"""Radar chart of the five paper metrics for every model (like the paper's Figure 3), and, when
`--attacks` ran, a bar panel beside it: what each attack brought back, per model, with its interval.

Every radar axis points outward for "better": metrics where lower is better (Forget ROUGE, ASR) are
drawn as 100 − x, and the title says so. Axes absent for every model are dropped; a model missing one
axis leaves a gap there.
"""

from __future__ import annotations

import math

from ..atomic import atomic_open
from .metrics import BY_KEY, RADAR_KEYS

AXIS_LABELS = {"forget_rouge": "Forget\n(100 − ROUGE)", "retain_rouge": "Retain ROUGE",
               "neighbor_acc": "Neighbour acc", "asr": "Robustness\n(100 − ASR)", "mmlu": "MMLU"}


def radar_values(row: dict, keys) -> list[float]:
    out = []
    for key in keys:
        value = row.get(key)
        if value is None:
            out.append(float("nan"))
        else:
            out.append(100.0 - value if BY_KEY[key].lower_is_better else value)
    return out


def short_label(name: str) -> str:
    """A legend label: `runs/results/hp/ours/model` -> `ours`; aliases and in-context rows stay as they are."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if len(parts) >= 2 and parts[-1] == "model":
        return parts[-2]
    return parts[-1] if parts else name


# The one number per attack the panel shows (lower = more robust): Forget after quantization or relearning,
# the template leak rate.
ATTACK_BARS = (("quant4", "forget_rouge", "quant4\nForget"), ("quant8", "forget_rouge", "quant8\nForget"),
               ("relearn", "forget_rouge_after", "relearn\nForget after"), ("templates", "leak_rate", "templates\nleak rate"))


def _attack_panel(ax, result, colors) -> None:
    bars = [b for b in ATTACK_BARS if any((r.get("attacks") or {}).get(b[0]) for r in result.models)]
    attacked = [r for r in result.models if r.get("attacks")]
    width = 0.8 / max(len(attacked), 1)
    for i, row in enumerate(attacked):
        xs, ys, errs = [], [], [[], []]
        for j, (attack, key, _) in enumerate(bars):
            numbers = row["attacks"].get(attack) or {}
            if numbers.get(key) is None:
                continue
            ci = numbers.get(f"{key}_ci") or [numbers[key]] * 2
            xs.append(j + (i - (len(attacked) - 1) / 2) * width)
            ys.append(numbers[key])
            errs[0].append(numbers[key] - ci[0])
            errs[1].append(ci[1] - numbers[key])
        ax.bar(xs, ys, width=width, yerr=errs, capsize=2, color=colors[result.models.index(row) % len(colors)])
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([label for _, _, label in bars], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_title("Robustness attacks (%, lower = more robust;\nbars: 95% interval)")


def plot_radar(result, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in RADAR_KEYS if any(r.get(k) is not None for r in result.models)] or list(RADAR_KEYS)
    angles = [2 * math.pi * i / len(keys) for i in range(len(keys))]
    n = len(result.models)
    with_attacks = any(r.get("attacks") for r in result.models)
    fig = plt.figure(figsize=(7 + 5 * with_attacks, 7.6 + 0.22 * ((n + 1) // 2)))
    ax = fig.add_subplot(1, 1 + with_attacks, 1, polar=True)
    colors = plt.get_cmap("tab10" if n <= 10 else "tab20").colors  # one colour per model
    for i, row in enumerate(result.models):
        values = radar_values(row, keys)
        label = short_label(row["model"]) + (" (base)" if row["model"] == result.base else "")
        ax.plot(angles + angles[:1], values + values[:1], marker="o", linewidth=1.8, label=label,
                color=colors[i % len(colors)], linestyle="-" if i < len(colors) else "--")
        ax.fill(angles + angles[:1], [0 if math.isnan(v) else v for v in values + values[:1]], alpha=0.06,
                color=colors[i % len(colors)])
    ax.set_xticks(angles)
    ax.set_xticklabels([AXIS_LABELS[k] for k in keys])
    ax.set_ylim(0, 100)
    ax.set_yticks([20, 40, 60, 80, 100])
    ax.set_title("mule evaluate — outward is better\n(Forget and ASR plotted as 100 − x)", pad=24)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8, frameon=False)
    if with_attacks:
        _attack_panel(fig.add_subplot(1, 2, 2), result, colors)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
