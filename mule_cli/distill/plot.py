"""Draw the per-objective gradient cosines a `--grad-cosine N` run logged (paper Fig. 2).

    python -m mule_cli.distill.plot runs/hp/train_log.jsonl grad_cosine.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import MuleError


def read_cosines(log_path) -> dict[str, list[tuple[int, float]]]:
    """{"forget|retain": [(step, cosine), ...], ...} from a train_log.jsonl."""
    series: dict[str, list[tuple[int, float]]] = {}
    for line in Path(log_path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        for pair, value in (row.get("grad_cosine") or {}).items():
            series.setdefault(pair, []).append((row["step"], value))
    return series


def plot_grad_cosine(log_path, png_path) -> Path:
    series = read_cosines(log_path)
    if not series:
        raise MuleError(f"{log_path}: no grad_cosine entries (train with --grad-cosine N)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MuleError("plotting needs matplotlib: pip install 'mule-cli[plot]'") from None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for pair, points in sorted(series.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, label=pair.replace("|", " vs "))
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set(xlabel="step", ylabel="cosine of gradients (last 3 blocks)", ylim=(-1.05, 1.05))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return Path(png_path)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(plot_grad_cosine(sys.argv[1], sys.argv[2]))
