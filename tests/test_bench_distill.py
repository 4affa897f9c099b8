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
                          "--json", str(out)], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert set(rows) == {"reference", "fused", "cached", "chunked", "floor", "quant_aware"}
    assert [rows[r]["teacher"] for r in ("fused", "cached", "chunked", "floor")] == ["uncached", "cached", "chunked",
                                                                                       "floor"]
    assert all(r["step_s"] > 0 for r in rows.values())
    assert "uncached/cached" in res.stdout and "quant-aware/cached" in res.stdout and "chunked/cached" in res.stdout
