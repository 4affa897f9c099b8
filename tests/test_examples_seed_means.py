"""examples/seed_means.py pools per-seed evaluate reports into one table (docs/RESULTS.md uses it).

Why a test: a wrong mean or a silently mixed base row would misrank methods in a published table.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "seed_means.py"
spec = importlib.util.spec_from_file_location("seed_means", SCRIPT)
seed_means = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed_means)

KEYS = ["forget_rouge", "retain_rouge", "neighbor_acc", "neighbor_refusal", "asr", "mmlu", "overall"]


def row(model, *vals):
    return {"model": model, **dict(zip(KEYS, vals))}


def report(tmp_path, name, rows, base=row("base", 90.0, 100.0, 50.0, 30.0, 80.0, 26.0, 0.0)):
    p = tmp_path / name
    p.write_text(json.dumps({"base": "base", "models": [base, *rows]}), encoding="utf-8")
    return str(p)


def test_means_ranges_and_method_names_over_seeds(tmp_path, capsys):
    a = report(tmp_path, "s0.json", [row("runs/results/hp/npo/model", 10.0, 70.0, 60.0, 0.0, 8.0, 30.0, 150.0),
                                     row("runs/exp/ours/model", 20.0, 60.0, 40.0, 40.0, 0.0, 32.0, 100.0)])
    b = report(tmp_path, "s1.json", [row("runs/results/hp-seed1/npo/model", 30.0, 50.0, 40.0, 10.0, 0.0, 28.0, 90.0),
                                     row("runs/exp/ours_s1/model", 0.0, 80.0, 60.0, 20.0, 0.0, 34.0, 160.0)])
    out = tmp_path / "t.md"
    assert seed_means.main([a, b, "--markdown", str(out)]) == 0
    lines = {ln.split("|")[1].strip(): ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")}
    assert "| npo | 2 | 20.0 (10.0–30.0) | 60.0 (50.0–70.0) |" in lines["npo"]
    assert lines["ours"].endswith("| 130.0 (100.0–160.0) |")
    names = [ln.split("|")[1].strip() for ln in out.read_text(encoding="utf-8").splitlines()[2:5]]
    assert names == ["base", "ours", "npo"]  # sorted by mean overall, best first


def test_reports_with_different_base_rows_are_refused(tmp_path):
    a = report(tmp_path, "a.json", [])
    b = report(tmp_path, "b.json", [], base=row("base", 91.0, 100.0, 50.0, 30.0, 80.0, 26.0, 0.0))
    with pytest.raises(SystemExit, match="base row differs"):
        seed_means.main([a, b])


def test_a_report_can_contribute_only_some_methods_under_another_name(tmp_path, capsys):
    a = report(tmp_path, "a.json", [row("x/ours/model", 1, 1, 1, 1, 1, 1, 10.0), row("x/npo/model", 1, 1, 1, 1, 1, 1, 20.0)])
    b = report(tmp_path, "b.json", [row("y/best8_s1/model", 1, 1, 1, 1, 1, 1, 30.0)])
    assert seed_means.main([f"{a}:npo,ours=ours (old)", f"{b}:best8=ours"]) == 0
    lines = {ln.split("|")[1].strip(): ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")}
    assert lines["ours"].startswith("| ours | 1 |") and lines["ours"].endswith("| 30.0 |")  # a's ours kept apart
    assert lines["ours (old)"].endswith("| 10.0 |") and lines["npo"].endswith("| 20.0 |")
    with pytest.raises(SystemExit, match="no method named sft"):
        seed_means.main([f"{a}:sft"])


def test_plot_draws_the_means(tmp_path):
    pytest.importorskip("matplotlib")
    a = report(tmp_path, "a.json", [row("x/npo/model", 10, 70, 60, 0, 8, 30, 150.0)])
    b = report(tmp_path, "b.json", [row("y/npo_s1/model", 30, 50, 40, 10, 0, 28, 90.0)])
    png = tmp_path / "r.png"
    assert seed_means.main([a, b, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="no row named sft"):
        seed_means.main([a, b, "--plot", str(png), "--plot-only", "npo,sft"])
