"""`--quant-aware GRID`: the student's forward runs on the grid evaluate's quant attacks use, the gradient
is straight-through into full-precision masters, and what is saved is those masters."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from conftest import full_and_resumed_run, make_tiny_llama, tiny_distill_config, write_jsonl
from mule_cli.distill import distill, quant_aware
from mule_cli.distill.lora import LoRALinear, add_lora, merge_lora
from mule_cli.errors import MuleError
from mule_cli.quant import GRID_NAMES, quantize_dequantize, quantize_model_
from test_distill_lora import RECORDS

IDS = torch.tensor([[1, 5, 9, 13, 2, 7]])


@pytest.mark.parametrize("grid", GRID_NAMES)
def test_active_forward_is_the_quantized_models_forward_and_its_gradient(grid):
    """Forward equal to a model snapped by evaluate's quantizer (tied embedding/head included); the
    gradient on each master weight equals the quantized model's gradient on its weight (STE)."""
    model = make_tiny_llama(300)
    snapped = copy.deepcopy(model)
    quantize_model_(snapped, grid)
    quant_aware.enable(model, grid)
    out, ref = model(input_ids=IDS).logits, snapped(input_ids=IDS).logits
    assert torch.equal(out, ref)
    (out ** 2).sum().backward()
    (ref ** 2).sum().backward()
    for (name, p), (_, q) in zip(model.named_parameters(), snapped.named_parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-5), name


def test_the_tied_weight_is_snapped_once_per_step_and_again_after_an_update(monkeypatch):
    """Embedding and lm_head share one weight: one snap serves both uses in a step, an optimizer step (a
    new _version) or set_step makes a fresh one, and the forward stays the snapped model's."""
    from mule_cli import quant

    model = make_tiny_llama(300)
    tied = model.get_input_embeddings().weight
    assert tied is model.get_output_embeddings().weight
    snaps = []
    real = quant.quantize_dequantize
    monkeypatch.setattr(quant_aware, "quantize_dequantize", lambda w, g: snaps.append(w) or real(w, g))
    qa = quant_aware.enable(model, "q4_1")
    assert qa.shared == {id(tied)}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(2):
        snaps.clear()
        model(input_ids=IDS).logits.sum().backward()
        model(input_ids=IDS)  # a second micro-batch in the same step
        assert sum(w is tied for w in snaps) == 1
        opt.step()
        opt.zero_grad()
    qa.set_step(2)
    assert not qa._snapped
    qa.remove()
    snapped = copy.deepcopy(model)
    quant_aware.enable(model, "q4_1")
    quantize_model_(snapped, "q4_1")
    assert torch.equal(model(input_ids=IDS).logits, snapped(input_ids=IDS).logits)


def test_inactive_forward_and_remove_give_the_plain_model_back():
    model = make_tiny_llama(300)
    plain = model(input_ids=IDS).logits
    keys = list(model.state_dict())
    qa = quant_aware.enable(model, "q4_1")
    assert not torch.allclose(model(input_ids=IDS).logits, plain, atol=1e-4)  # the grid does change the output
    qa.active = False
    assert torch.equal(model(input_ids=IDS).logits, plain)
    qa.active = True
    qa.remove()
    assert torch.equal(model(input_ids=IDS).logits, plain)
    assert list(model.state_dict()) == keys  # checkpoints and saved models keep the base's key names
    assert not any("forward" in vars(m) for m in model.modules())


def test_steps_alternate_between_the_grid_and_full_precision():
    qa = quant_aware.QuantAware("int8")
    seen = []
    for step in range(4):
        qa.set_step(step)
        seen.append(qa.active)
    assert seen == [True, False, True, False]


def test_lora_quantizes_the_merged_weight_and_trains_the_adapters():
    model = make_tiny_llama(300)
    add_lora(model, rank=2, alpha=4)
    torch.manual_seed(1)
    for module in model.modules():
        if isinstance(module, LoRALinear):
            module.lora_b.data.normal_(0, 0.1)
    qa = quant_aware.enable(model, "q4_1")
    out = model(input_ids=IDS).logits
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    qa.remove()
    merge_lora(model)
    quantize_model_(model, "q4_1")
    assert torch.allclose(out, model(input_ids=IDS).logits, atol=1e-5)


def test_an_uncovered_2d_weight_is_an_error_not_a_silent_gap():
    model = make_tiny_llama(300)
    model.extra = torch.nn.Module()
    model.extra.table = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="extra.table"):
        quant_aware.enable(model, "q4_1")
    assert not any("forward" in vars(m) for m in model.modules())  # nothing left patched


def test_run_saves_full_precision_masters_and_resumes_to_the_same_weights(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    base, a, b = full_and_resumed_run(tiny_model_dir, data, tmp_path, quant_aware="q4_1", lr=1e-2, max_steps=4,
                                      batch_size=2)
    assert set(a) == set(base)
    moved = [k for k in a if a[k].ndim == 2 and not torch.equal(a[k], base[k])]
    assert moved
    assert any(not torch.equal(a[k], quantize_dequantize(a[k], "q4_1")) for k in moved)  # masters, not the grid
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), key


def test_quantized_steps_train_the_quantized_model(tiny_model_dir, tmp_path):
    """A run whose every step sees the grid gives different weights from a plain run: the fake-quantized
    forward is what the gradient was computed on (a no-op patch would give the plain run's weights)."""
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    distill(tiny_distill_config(tiny_model_dir, data, tmp_path / "plain", lr=1e-2, max_steps=1))
    distill(tiny_distill_config(tiny_model_dir, data, tmp_path / "qa", lr=1e-2, max_steps=1, quant_aware="q4_1"))
    a = load_file(str(tmp_path / "plain/model/model.safetensors"))
    b = load_file(str(tmp_path / "qa/model/model.safetensors"))
    assert any(not torch.allclose(a[k], b[k], atol=1e-7) for k in a)


def test_unknown_grid_is_a_one_line_error(tiny_model_dir, tmp_path):
    with pytest.raises(MuleError, match="--quant-aware must be one of q4_1, int4, int8"):
        tiny_distill_config(tiny_model_dir, tmp_path / "d.jsonl", tmp_path / "o", quant_aware="q3")
