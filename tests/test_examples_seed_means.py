"""examples/seed_means.py pools per-seed `mule evaluate --records` files into one table with intervals over
seeds × records (docs/RESULTS.md uses it).

Why a test: a wrong mean, a silently mixed base or an interval that ignores the seeds would misrank methods
in a published table.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from mule_cli.evaluate.pooled import pool_seeds

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "seed_means.py"
spec = importlib.util.spec_from_file_location("seed_means", SCRIPT)
seed_means = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed_means)


def rows(model, forget, correct):
    """Per-record rows: forget ROUGE recalls and neighbour MCQ correctness."""
    out = [{"model": model, "id": f"f{i}", "objective": "forget", "generation": "g", "rouge_recall": v,
            "rouge_f1": v, "declined": False} for i, v in enumerate(forget)]
    out += [{"model": model, "id": f"n{i}", "objective": "neighbor", "picked": 0, "correct": c,
             "refusal_picked": False} for i, c in enumerate(correct)]
    return out


def method_lines(text):
    """{first cell: line} of the method table (the pairs table after it is left out)."""
    table = text.split("\n\n")[0]
    return {ln.split("|")[1].strip(): ln for ln in table.splitlines() if ln.startswith("| ")}


BASE = rows("base", [1.0, 1.0, 0.5, 0.5], [True, False, True, False])


def records(tmp_path, name, *methods, base=BASE):
    p = tmp_path / name
    lines = [*base] + [r for m in methods for r in m]
    p.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return str(p)


def test_means_intervals_and_method_names_over_seeds(tmp_path, capsys):
    a = records(tmp_path, "s0.jsonl", rows("runs/results/hp/npo/model", [0.0, 0.0, 0.5, 0.5], [True] * 4),
                rows("runs/exp/ours/model", [0.5] * 4, [True, True, False, False]))
    b = records(tmp_path, "s1.jsonl", rows("runs/results/hp-seed1/npo/model", [0.0, 0.5, 0.0, 0.5], [True] * 4),
                rows("runs/exp/ours_s1/model", [0.0] * 4, [True, False, True, False]))
    out, js = tmp_path / "t.md", tmp_path / "t.json"
    assert seed_means.main([a, b, "--markdown", str(out), "--json", str(js)]) == 0
    lines = method_lines(capsys.readouterr().out)
    pooled = json.loads(js.read_text())
    npo, ours = pooled["methods"]["npo"], pooled["methods"]["ours"]
    assert npo["seeds"] == 2 and npo["forget_rouge"] == pytest.approx(25.0) and npo["neighbor_acc"] == 100.0
    assert ours["forget_rouge"] == pytest.approx(25.0) and ours["neighbor_acc"] == pytest.approx(50.0)
    # overall vs base (75 Forget, 50 Nbr acc): npo +50 +50 = 100, ours +50 +0 = 50
    assert npo["overall"] == pytest.approx(100.0) and ours["overall"] == pytest.approx(50.0)
    assert "| npo | 2 | 25.0 [" in lines["npo"]
    names = [ln.split("|")[1].strip() for ln in out.read_text(encoding="utf-8").splitlines()[2:5]]
    assert names == ["base", "npo", "ours"]  # sorted by mean overall, best first
    assert pooled["pairs"][0]["a"] == "npo" and pooled["pairs"][0]["diff"] == pytest.approx(50.0)
    lo, hi = npo["neighbor_acc_ci"]
    assert lo == hi == 100.0  # every seed and record correct: no spread
    assert npo["forget_rouge_delta_ci"][1] < 0  # forgets more than the base on every resample


def test_the_interval_counts_the_spread_between_seeds():
    same = [("s0", BASE + rows("x/m/model", [0.5] * 4, [True] * 4)), ("s1", BASE + rows("y/m_s1/model", [0.5] * 4, [True] * 4))]
    apart = [("s0", BASE + rows("x/m/model", [0.0] * 4, [True] * 4)), ("s1", BASE + rows("y/m_s1/model", [1.0] * 4, [True] * 4))]
    assert pool_seeds(same, n=500).methods["m"]["forget_rouge_ci"] == [50.0, 50.0]
    lo, hi = pool_seeds(apart, n=500).methods["m"]["forget_rouge_ci"]
    assert lo == 0.0 and hi == 100.0  # same mean, but the seeds disagree completely


def test_files_with_different_base_rows_are_refused(tmp_path):
    a = records(tmp_path, "a.jsonl")
    b = records(tmp_path, "b.jsonl", base=rows("base", [1.0, 1.0, 0.5, 0.0], [True, False, True, False]))
    with pytest.raises(SystemExit, match="base rows differ"):
        seed_means.main([a, b])


def test_a_file_can_contribute_only_some_methods_under_another_name(tmp_path, capsys):
    a = records(tmp_path, "a.jsonl", rows("x/ours/model", [1.0] * 4, [True] * 4), rows("x/npo/model", [0.0] * 4, [True] * 4))
    b = records(tmp_path, "b.jsonl", rows("y/best8_s1/model", [0.5] * 4, [True] * 4))
    assert seed_means.main([f"{a}:npo,ours=ours (old)", f"{b}:best8=ours"]) == 0
    lines = method_lines(capsys.readouterr().out)
    assert lines["ours"].startswith("| ours | 1 | 50.0") and lines["ours (old)"].startswith("| ours (old) | 1 | 100.0")
    with pytest.raises(SystemExit, match="no method named sft"):
        seed_means.main([f"{a}:sft"])


def test_plot_draws_the_means(tmp_path):
    pytest.importorskip("matplotlib")
    a = records(tmp_path, "a.jsonl", rows("x/npo/model", [0.0] * 4, [True] * 4))
    b = records(tmp_path, "b.jsonl", rows("y/npo_s1/model", [0.5] * 4, [False] * 4))
    png = tmp_path / "r.png"
    assert seed_means.main([a, b, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="no row named sft"):
        seed_means.main([a, b, "--plot", str(png), "--plot-only", "npo,sft"])


def under(attack, model_rows):
    return [{**r, "attack": attack} for r in model_rows if r["objective"] == "forget"]


def test_attack_rows_pool_per_attack_and_only_where_every_seed_has_them(tmp_path, capsys):
    base_q = under("quant4", rows("base", [1.0, 1.0, 1.0, 1.0], []))
    m0, m1 = rows("x/m/model", [0.0] * 4, [True] * 4), rows("y/m_s1/model", [0.0] * 4, [True] * 4)
    k0, k1 = rows("x/k/model", [0.0] * 4, [True] * 4), rows("y/k_s1/model", [0.0] * 4, [True] * 4)
    s0 = BASE + base_q + m0 + under("quant4", rows("x/m/model", [0.5] * 4, [])) + k0 + under("quant4", k0)
    s1 = BASE + base_q + m1 + under("quant4", rows("y/m_s1/model", [1.0, 1.0, 0.0, 0.0], [])) + k1
    pooled = pool_seeds([("s0", s0), ("s1", s1)], n=500)
    q = pooled.methods["m"]["attacks"]["quant4"]
    assert q["forget_rouge"] == pytest.approx(50.0)  # (50 + 50) / 2: attack rows, not the plain ones (0)
    assert q["forget_rouge_delta_ci"][1] < 0  # below the quantized base (100) on every resample
    assert pooled.methods["m"]["forget_rouge"] == 0.0  # the plain metrics ignore the attack rows
    assert "attacks" not in pooled.methods["k"]  # quant4 at seed 0 only: not pooled
    assert pooled.base["attacks"]["quant4"]["forget_rouge_ci"] == [100.0, 100.0]
    p0, p1 = tmp_path / "s0.jsonl", tmp_path / "s1.jsonl"
    for path, lines in ((p0, s0), (p1, s1)):
        path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    assert seed_means.main([str(p0), str(p1)]) == 0
    out = capsys.readouterr().out
    assert "| under quant4 |" in out and "| m | 2 | 50.0 [" in out.split("| under quant4 |")[1]


def relearned(model, ids, before, after):
    return [{"model": model, "attack": "relearn", "id": i, "objective": "forget", "rouge_recall_before": b,
             "rouge_recall_after": a} for i, b, a in zip(ids, before, after)]


def leaks(model, leaked):
    return [{"model": model, "attack": "templates", "id": f"f{i}", "objective": "forget", "leaked": v}
            for i, v in enumerate(leaked)]


def test_relearn_and_templates_pool_their_own_metrics_on_their_own_records(tmp_path, capsys):
    """relearn measures half the forget records (f1, f3 here) and templates reports a leak rate: each pools
    over its own rows and metrics, as `mule evaluate` computes them, and the table shows them."""
    m0, m1 = rows("x/m/model", [0.0] * 4, [True] * 4), rows("y/m_s1/model", [0.0] * 4, [True] * 4)
    s0 = BASE + relearned("base", ["f1", "f3"], [1.0, 1.0], [1.0, 1.0]) + leaks("base", [True] * 4) + m0 \
        + relearned("x/m/model", ["f1", "f3"], [0.0, 0.0], [1.0, 0.0]) + leaks("x/m/model", [True, False, False, False])
    s1 = BASE + relearned("base", ["f1", "f3"], [1.0, 1.0], [1.0, 1.0]) + leaks("base", [True] * 4) + m1 \
        + relearned("y/m_s1/model", ["f1", "f3"], [0.0, 0.0], [0.0, 0.0]) + leaks("y/m_s1/model", [True] * 4)
    pooled = pool_seeds([("s0", s0), ("s1", s1)], n=500)
    r, t = pooled.methods["m"]["attacks"]["relearn"], pooled.methods["m"]["attacks"]["templates"]
    assert r["forget_rouge_before"] == 0.0 and r["forget_rouge_after"] == pytest.approx(25.0)  # (50 + 0) / 2
    assert r["forget_rouge_after_delta_ci"][1] <= 0  # never above the relearned base (100)
    assert t["leak_rate"] == pytest.approx(62.5)  # (25 + 100) / 2
    assert pooled.base["attacks"]["templates"]["leak_rate_ci"] == [100.0, 100.0]
    paths = []
    for name, lines in (("s0.jsonl", s0), ("s1.jsonl", s1)):
        (tmp_path / name).write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
        paths.append(str(tmp_path / name))
    assert seed_means.main(paths) == 0
    out = capsys.readouterr().out
    assert "| under relearn | seeds | Forget before ↓ | Forget after ↓ |" in out
    assert "| m | 2 | 62.5 [" in out.split("| under templates |")[1]


def test_gzipped_records_read_like_plain_ones(tmp_path, capsys):
    import gzip

    plain = records(tmp_path, "s0.jsonl", rows("x/m/model", [0.5] * 4, [True] * 4))
    packed = tmp_path / "s0.jsonl.gz"
    packed.write_bytes(gzip.compress(Path(plain).read_bytes()))
    assert seed_means.main([plain]) == 0
    first = capsys.readouterr().out
    assert seed_means.main([f"{packed}:m=renamed"]) == 0
    assert capsys.readouterr().out == first.replace("| m |", "| renamed |")


# examples/paired_metrics.py: every metric's paired difference between two settings, per domain and pooled
# over domains (RESULTS.md decides defaults with it); a sign error or a pooled cell that is not the
# domains' mean would flip a published decision.
sys.path.insert(0, str(SCRIPT.parent))  # paired_metrics imports seed_means beside it
_pm_spec = importlib.util.spec_from_file_location("paired_metrics", SCRIPT.parent / "paired_metrics.py")
paired_metrics = importlib.util.module_from_spec(_pm_spec)
_pm_spec.loader.exec_module(paired_metrics)


def paired_table(text):
    return {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
            for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| metric")}


def test_paired_metrics_per_domain_and_their_mean_pooled(tmp_path, capsys):
    base = rows("base", [1.0] * 4, [False] * 4)
    d1 = records(tmp_path, "d1.jsonl", rows("runs/new-s0/model", [0.0] * 4, [True] * 4),
                 rows("runs/old-s0/model", [0.5] * 4, [True] * 4), base=base)
    d2 = records(tmp_path, "d2.jsonl", rows("runs/new-s0/model", [0.25] * 4, [True, True, False, False]),
                 rows("runs/old-s0/model", [0.25] * 4, [True] * 4), base=base)
    assert paired_metrics.main([f"{d1}:new", f"{d1}:old", f"{d2}:new", f"{d2}:old", "--bootstrap", "200"]) == 0
    t = paired_table(capsys.readouterr().out)
    assert t["forget_rouge"] == ["-50.0 [-50.0, -50.0]", "+0.0 [+0.0, +0.0]", "-25.0 [-25.0, -25.0]"]
    assert t["neighbor_acc"][0] == "+0.0 [+0.0, +0.0]" and t["neighbor_acc"][1].startswith("-50.0")
    assert t["neighbor_acc"][2].startswith("-25.0")
    assert "asr" not in t  # no adversarial records: the metric is absent, not zero


def test_paired_metrics_refuses_a_missing_setting_and_odd_sources(tmp_path):
    d1 = records(tmp_path, "d1.jsonl", rows("runs/new-s0/model", [0.0] * 4, [True] * 4))
    with pytest.raises(SystemExit, match="no such setting"):
        paired_metrics.main([f"{d1}:new", f"{d1}:old"])
    with pytest.raises(SystemExit, match="pairs"):
        paired_metrics.main([f"{d1}:new"])
    other = records(tmp_path, "d2.jsonl", rows("runs/old-s0/model", [0.0] * 4, [True] * 4),
                    base=rows("base", [1.0, 1.0, 0.5, 0.0], [True, False, True, False]))
    with pytest.raises(SystemExit, match="base rows differ"):  # measured against another base: no pairing
        paired_metrics.main([f"{d1}:new", f"{other}:old"])


def test_paired_metrics_pairs_an_attack_only_where_both_settings_have_it(tmp_path, capsys):
    base = BASE + under("quant4", rows("base", [1.0] * 4, []))
    new, old = rows("runs/new-s0/model", [0.0] * 4, [True] * 4), rows("runs/old-s0/model", [0.0] * 4, [True] * 4)
    d1 = records(tmp_path, "d1.jsonl", new, under("quant4", rows("runs/new-s0/model", [0.25] * 4, [])), old,
                 under("quant4", rows("runs/old-s0/model", [0.75] * 4, [])), base=base)
    assert paired_metrics.main([f"{d1}:new", f"{d1}:old", "--bootstrap", "200"]) == 0
    t = paired_table(capsys.readouterr().out)
    assert t["quant4 forget_rouge"] == ["-50.0 [-50.0, -50.0]"] and t["forget_rouge"] == ["+0.0 [+0.0, +0.0]"]
    d2 = records(tmp_path, "d2.jsonl", new, under("quant4", rows("runs/new-s0/model", [0.25] * 4, [])), old, base=base)
    assert paired_metrics.main([f"{d2}:new", f"{d2}:old"]) == 0
    assert not any(k.startswith("quant4") for k in paired_table(capsys.readouterr().out))
