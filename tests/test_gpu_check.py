"""benchmarks/gpu_check.sh, the first-GPU check, run here as `--dry-run`: the same steps on the CPU at small
sizes (gloo for NCCL), every CUDA-only check a SKIP line. On the GPU machine the same script runs the CUDA
versions; these tests keep its plumbing (steps, workers, stand-in default model, exit status) working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = ["env", "build", "pytest", "op", "compile", "bench", "distill", "distill-ddp"]
CUDA_ONLY = ["build/cuda", "pytest/cuda", "op/int64", "compile/inductor", "bench/cuda"]


def run_check(*args, fail_env: str | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("MULE_GPU_CHECK_FAIL", None)
    if fail_env:
        env["MULE_GPU_CHECK_FAIL"] = fail_env
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def summary(stdout: str) -> dict[str, str]:
    """{step or sub-check: status} from the lines after the summary header."""
    lines = stdout.split("== gpu_check summary", 1)[1].splitlines()[1:]
    return {ln.split()[1]: ln.split()[0] for ln in lines if ln[:4] in ("PASS", "FAIL", "SKIP")}


def test_dry_run_passes_every_step_and_names_what_it_skipped(tmp_path):
    report = tmp_path / "check.json"
    # the stand-in default model is what the GPU machine (no GGUF package there) gets in the pytest step
    proc = run_check("--dry-run", "--stand-in-default-model", "--json", str(report))
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-3000:]
    status = summary(out)
    assert {s: status.get(s) for s in STEPS} == {s: "PASS" for s in STEPS}, out[-6000:]
    assert {s: status.get(s) for s in CUDA_ONLY} == {s: "SKIP" for s in CUDA_ONLY}  # skips are never passes
    assert "FAIL" not in status.values()
    assert out.rstrip().splitlines()[-1].startswith("RESULT: PASS: 8 passed, 0 failed, 5 skipped")
    assert "stand-in default tokenizer" in out
    assert "gloo group (world size 1)" in out and "losses match the plain run" in out
    assert "1 worker process(es)" in out  # --dry-run shares one worker
    data = json.loads(report.read_text())
    assert data["result"] == "PASS" and [s["status"] for s in data["steps"]] == ["PASS"] * len(STEPS)
    assert data["steps"][STEPS.index("bench")]["details"]["speedup"] > 0


def test_a_failing_step_makes_the_script_exit_non_zero():
    # build's worker dies mid-step; op still runs (and passes) in a fresh worker; compile fails
    proc = run_check("--dry-run", "--only", "build,op,compile", "--fail", "build:crash,compile")
    out = proc.stdout
    assert proc.returncode == 1, out[-6000:] + proc.stderr[-3000:]
    status = summary(out)
    assert (status["build"], status["op"], status["compile"]) == ("FAIL", "PASS", "FAIL"), out[-6000:]
    assert status["env"] == status["bench"] == "SKIP"  # not selected: not a pass either
    assert "the worker process died (exit status 3)" in out and "injected failure (--fail compile)" in out
    assert "2 worker process(es)" in out
    assert out.rstrip().splitlines()[-1].startswith("RESULT: FAIL: 1 passed, 2 failed (build, compile)")


def test_failure_injected_through_the_environment_and_bad_arguments():
    proc = run_check("--dry-run", "--only", "env", fail_env="env")
    assert proc.returncode == 1 and summary(proc.stdout)["env"] == "FAIL", proc.stdout[-3000:]
    bad = run_check("--fail", "nosuchstep")
    assert bad.returncode == 2 and "not STEP or STEP:crash" in bad.stderr
