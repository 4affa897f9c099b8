"""Data parallelism: `torchrun --nproc-per-node 2` (gloo, CPU; DDP and FSDP2) gives the weights one process gives
for the same global batch — the per-objective means are normalised by global unit counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import write_jsonl
from test_distill import RECORDS


def _args(model_dir, data, out, extra, impl="reference"):
    return ["distill", "-m", str(model_dir), "--data", str(data), "--target", "Harry Potter", "--demos", "1",
            "-o", str(out), "--max-steps", "2", "--batch-size", "4", "--lr", "1e-3", "--loss-impl", impl, "-q",
            *extra]


def _torchrun(args, env):
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "mule_cli.cli", *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("extra", [[], ["--quant-aware", "q4_1"]], ids=["plain", "quant-aware"])
def test_two_gloo_processes_match_one_process(tiny_model_dir, tmp_path, extra):
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "mule_cli.cli", *_args(tiny_model_dir, data, one, extra)], check=True,
                   env=env, capture_output=True, timeout=300)
    _torchrun(_args(tiny_model_dir, data, two, extra), env)
    sharded = tmp_path / "fsdp"
    _torchrun([*_args(tiny_model_dir, data, sharded, extra), "--fsdp"], env)
    assert json.loads((two / "run.json").read_text())["world_size"] == 2
    a = load_file(str(one / "model" / "model.safetensors"))
    b = load_file(str(two / "model" / "model.safetensors"))
    c = load_file(str(sharded / "model" / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(a[k], base[k]) for k in a)  # training did something
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
        assert torch.allclose(a[key], c[key], atol=1e-5, rtol=1e-4), key
    log1 = [json.loads(x) for x in (one / "train_log.jsonl").read_text().splitlines()]
    log2 = [json.loads(x) for x in (two / "train_log.jsonl").read_text().splitlines()]
    for r1, r2 in zip(log1, log2):
        assert abs(r1["loss"] - r2["loss"]) < 1e-6 * max(1.0, abs(r1["loss"]))


def test_ddp_with_the_chunked_loss_matches_one_process(tiny_model_dir, tmp_path):
    """`ours` on the fused kernel runs from hidden states, the head weight used outside the DDP forward."""
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    subprocess.run([sys.executable, "-m", "mule_cli.cli", *_args(tiny_model_dir, data, tmp_path / "one", [], "fused")],
                   check=True, env=env, capture_output=True, timeout=300)
    _torchrun(_args(tiny_model_dir, data, tmp_path / "two", [], "fused"), env)
    for run in ("one", "two"):
        assert json.loads((tmp_path / run / "run.json").read_text())["loss_from_hidden_states"]
    a = load_file(str(tmp_path / "one/model/model.safetensors"))
    b = load_file(str(tmp_path / "two/model/model.safetensors"))
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
