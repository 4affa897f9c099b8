"""benchmarks/bench_distill.py runs end to end (on its tiny random 128k-vocabulary Llama) and reports every row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_distill_reports_every_row(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_distill.py"), "--tiny-vocab", "128256",
                          "--batch-size", "4", "--warmup", "1", "--repeats", "1", "--quant-aware", "q4_1",
                          "--on-grid", "--json", str(out)],
                         capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["variant"]: r for r in json.loads(out.read_text())}
    assert list(rows) == ["reference", "a", "b", "c", "c_first_epoch", "cached_logits", "floor", "quant_aware",
                          "on_grid"]
    assert all(r["model"] == "tiny-llama-v128256" and r["step_s"] > 0 and r["peak_mb"] >= 0 for r in rows.values())
    assert [(rows[v]["teacher"], rows[v]["chunked"], rows[v]["fresh_targets"]) for v in ("a", "b", "c", "c_first_epoch")] \
        == [("uncached", False, False), ("cached", False, True), ("cached", True, False), ("cached", True, True)]
    assert rows["quant_aware"]["chunked"] and not rows["cached_logits"]["chunked"]  # quant-aware trains as c does
    assert rows["on_grid"]["chunked"] and rows["on_grid"]["impl"] == "fused+grid"
    for line in ("a/b", "a/c", "c/floor", "c/cached_logits", "quant-aware/c:", "on-grid/c:"):
        assert line in res.stdout
