"""`--on-grid`: a model whose Linear weights sit on the Q4_1 grid trains only the grid's per-group steps and
offsets, so the saved model is on the grid and quantizing it (evaluate's quant4 attack) changes nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from conftest import distill_cli_error, full_and_resumed_run, make_tiny_llama, tiny_distill_config, write_jsonl
from mule_cli.distill import distill, on_grid
from mule_cli.errors import MuleError
from mule_cli.quant import quantize_dequantize, quantize_model_
from test_distill_lora import RECORDS

IDS = torch.tensor([[1, 5, 9, 13, 2, 7]])


def on_grid_model(vocab_size: int = 300):
    model = make_tiny_llama(vocab_size)
    quantize_model_(model, "q4_1")
    return model


@pytest.fixture
def grid_model_dir(tmp_path, tokenizer):
    """The tiny model snapped onto Q4_1, saved: it ships on the grid, as the default model does."""
    path = tmp_path / "tiny_q4_1"
    on_grid_model(len(tokenizer)).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def test_only_a_model_on_the_grid_ships_on_it():
    assert on_grid.ships_on_grid(on_grid_model())
    assert not on_grid.ships_on_grid(make_tiny_llama(300))
    nudged = on_grid_model()
    with torch.no_grad():
        nudged.model.layers[1].mlp.down_proj.weight[0, 0] += 1e-4  # one weight off the grid is enough
    assert not on_grid.ships_on_grid(nudged)


def test_enabled_model_computes_what_it_did_and_trains_only_steps_offsets_and_norms():
    model = on_grid_model()
    before = model(input_ids=IDS).logits
    assert on_grid.enable(model) == 2 * 7  # q, k, v, o, gate, up, down per layer; not the tied head
    assert torch.equal(model(input_ids=IDS).logits, before)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("grid_step", "grid_offset", "norm.weight", "layernorm.weight"))
                             for n in trainable)
    model(input_ids=IDS).logits.square().sum().backward()
    steps = [p for n, p in model.named_parameters() if n.endswith("grid_step")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in steps)


def test_finish_leaves_a_plain_model_on_the_grid_that_quantization_does_not_change():
    model = on_grid_model()
    on_grid.enable(model)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("grid_step", "grid_offset")):
                p.mul_(1 + 0.1 * torch.randn_like(p))  # a trained grid: new steps and offsets
        model.model.layers[0].mlp.up_proj.grid_step[:3].neg_()  # steps trained below zero
    trained = model(input_ids=IDS).logits
    on_grid.finish(model)
    assert not any(n.endswith(("grid_step", "grid_offset")) for n, _ in model.named_parameters())
    assert torch.allclose(model(input_ids=IDS).logits, trained, atol=1e-3)  # d and m rounded to fp16 on save
    quantized = copy.deepcopy(model)
    quantize_model_(quantized, "q4_1")
    for (name, a), (_, b) in zip(model.named_parameters(), quantized.named_parameters()):
        if a.ndim == 2 and "embed" not in name:
            assert torch.equal(a, b), name


def test_enable_refuses_a_model_off_the_grid():
    with pytest.raises(MuleError, match="Q4_1 grid"):
        on_grid.enable(make_tiny_llama(300))


def test_param_groups_put_the_grid_at_half_the_rate_and_leave_a_plain_model_one_group():
    model = on_grid_model()
    assert len(on_grid.param_groups(model, 1e-3)) == 1
    on_grid.enable(model)
    rest, grid = on_grid.param_groups(model, 1e-3)
    assert "lr" not in rest and grid["lr"] == pytest.approx(1e-3 * on_grid.GRID_LR_SCALE)
    assert len(grid["params"]) == 2 * 14 and all(p.ndim == 1 for p in rest["params"])


@pytest.mark.parametrize("setting, method, other, expected", [
    ("auto", "ours", False, True), ("auto", "npo", False, False), ("auto", "duet", False, False),
    ("auto", "ours", True, False), ("no", "ours", False, False), ("yes", "npo", False, True)])
def test_auto_means_ours_on_a_model_that_ships_on_the_grid(setting, method, other, expected):
    assert (on_grid.apply(setting, method, on_grid_model(), other_reparam=other) > 0) is expected
    off_grid = make_tiny_llama(300)
    assert on_grid.apply("auto", "ours", off_grid, other_reparam=False) == 0
    assert not any("forward" in vars(m) for m in off_grid.modules())  # left as it was


def _linears(state: dict) -> dict:
    return {k: v for k, v in state.items() if v.ndim == 2 and "embed" not in k}


def test_run_on_the_grid_saves_a_model_on_the_grid_and_resumes_to_the_same_weights(grid_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    # on_grid auto: ours on a model that ships on the grid
    base, a, b = full_and_resumed_run(grid_model_dir, data, tmp_path, lr=1e-2, max_steps=4, batch_size=2)
    assert set(a) == set(base)
    moved = [k for k, v in _linears(a).items() if not torch.equal(v, base[k])]
    assert moved
    for k, v in _linears(a).items():
        assert torch.equal(quantize_dequantize(v, "q4_1"), v), k
    assert torch.equal(a["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), key


def test_on_grid_no_trains_every_weight_off_the_grid(grid_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    distill(tiny_distill_config(grid_model_dir, data, tmp_path / "o", lr=1e-2, max_steps=2, on_grid="no"))
    a = _linears(load_file(str(tmp_path / "o/model/model.safetensors")))
    assert any(not torch.equal(quantize_dequantize(v, "q4_1"), v) for v in a.values())


def test_bad_combinations_are_one_line_errors(tiny_model_dir, tmp_path):
    with pytest.raises(MuleError, match="--on-grid must be one of auto, yes, no"):
        tiny_distill_config(tiny_model_dir, tmp_path / "d.jsonl", tmp_path / "o", on_grid="maybe")
    with pytest.raises(MuleError, match="does not combine with --lora-rank"):
        tiny_distill_config(tiny_model_dir, tmp_path / "d.jsonl", tmp_path / "o", on_grid="yes", lora_rank=2)
    out = distill_cli_error(tiny_model_dir, RECORDS, tmp_path, "--on-grid", "yes")
    assert "Q4_1 grid" in out


@pytest.mark.parametrize("method", ["npo", "bild"])
def test_a_baseline_trains_on_the_grid_when_asked(grid_model_dir, tmp_path, method):
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    distill(tiny_distill_config(grid_model_dir, data, tmp_path / "o", method=method, lr=1e-2, max_steps=2,
                                on_grid="yes"))
    base = _linears(load_file(str(grid_model_dir / "model.safetensors")))
    a = _linears(load_file(str(tmp_path / "o/model/model.safetensors")))
    assert any(not torch.equal(v, base[k]) for k, v in a.items())
    assert all(torch.equal(quantize_dequantize(v, "q4_1"), v) for v in a.values())


def test_two_gloo_processes_on_the_grid_match_one_process(grid_model_dir, tmp_path):
    """DDP: the grid's steps and offsets are ordinary parameters, reduced like any other."""
    import json
    import os
    import subprocess
    import sys

    from test_distill_ddp import _args, _torchrun

    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "mule_cli.cli", *_args(grid_model_dir, data, one, [])], check=True,
                   env=env, capture_output=True, timeout=300)
    _torchrun(_args(grid_model_dir, data, two, []), env)
    assert json.loads((two / "run.json").read_text())["on_grid"]
    a = load_file(str(one / "model/model.safetensors"))
    b = load_file(str(two / "model/model.safetensors"))
    base = load_file(str(grid_model_dir / "model.safetensors"))
    assert any(not torch.equal(a[k], base[k]) for k in a)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key


def test_a_checkpoint_from_before_the_option_resumes_only_with_on_grid_no():
    """It trained every weight and holds no grid parameters: resuming it on the grid would fail to load."""
    from mule_cli.distill.config import DistillConfig, config_changes

    old = DistillConfig(target="Harry Potter").to_dict()
    del old["on_grid"]
    assert config_changes(old, DistillConfig(target="Harry Potter")) == ["on_grid"]
    assert config_changes(old, DistillConfig(target="Harry Potter", on_grid="no")) == []


def test_a_checkpoint_of_other_trainable_parameters_is_a_one_line_error(tmp_path):
    """A checkpoint whose optimizer state covers other parameters than this run trains (one written by a mule
    that froze or trained other weights): resuming says so instead of raising torch's own error."""
    from mule_cli.distill import checkpoint
    from mule_cli.distill.distributed import Dist

    def trainer(train_embedding: bool):
        model = on_grid_model()
        on_grid.enable(model)
        model.get_input_embeddings().weight.requires_grad_(train_embedding)
        optimizer = torch.optim.AdamW(on_grid.param_groups(model, 1e-3), lr=1e-3)
        return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    model, optimizer, scheduler = trainer(train_embedding=False)
    model(input_ids=IDS).logits.square().sum().backward()
    optimizer.step()
    checkpoint.save(tmp_path, model, optimizer, scheduler, {"step": 1}, Dist())
    checkpoint.load(tmp_path, *trainer(train_embedding=False))  # the same parameters resume
    with pytest.raises(MuleError, match="does not fit this run's trainable parameters"):
        checkpoint.load(tmp_path, *trainer(train_embedding=True))
