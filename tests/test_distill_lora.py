"""`--lora-rank`: low-rank adapters instead of full fine-tuning, on tiny models."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import interrupt_then_resume, make_tiny_llama, records, tiny_distill_config, write_jsonl
from mule_cli.distill import DistillConfig, distill
from mule_cli.distill.lora import LoRALinear, add_lora, merge_lora
from mule_cli.errors import MuleError

RECORDS = records("f1 r1 n1 a1")



def _config(model_dir, data_file, out, **kw):
    return tiny_distill_config(model_dir, data_file, out, **{"batch_size": 4, **kw})


# ---------------------------------------------------------------- --lora-rank
def test_lora_starts_at_the_base_and_trains_only_the_adapters(tokenizer):
    model = make_tiny_llama(len(tokenizer))
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    before = model(input_ids=ids).logits
    n = add_lora(model, rank=4, alpha=8)
    assert n == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    assert torch.allclose(model(input_ids=ids).logits, before, atol=1e-6)  # B = 0 at the start
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.endswith(("lora_a", "lora_b")) for name in trainable)


def test_merge_lora_reproduces_the_adapted_model_under_base_key_names(tokenizer):
    model = make_tiny_llama(len(tokenizer))
    keys = set(model.state_dict())
    add_lora(model, rank=2, alpha=4)
    torch.manual_seed(3)
    for module in model.modules():
        if isinstance(module, LoRALinear):
            module.lora_b.data.normal_(0, 0.1)
    ids = torch.tensor([[1, 7, 3, 2]])
    adapted = model(input_ids=ids).logits
    assert merge_lora(model) == 14
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert set(model.state_dict()) == keys
    assert torch.allclose(model(input_ids=ids).logits, adapted, atol=1e-5)


def test_lora_run_saves_a_plain_model_where_only_projections_moved(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    out = tmp_path / "lora"
    distill(_config(tiny_model_dir, data, out, lora_rank=4, lr=1e-2, max_steps=3))
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    assert set(before) == set(after)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith("_proj.weight") for k in changed), changed
    assert AutoModelForCausalLM.from_pretrained(str(out / "model")) is not None


def test_lora_resume_ends_with_the_same_weights(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    kw = dict(lora_rank=4, lr=1e-2, max_steps=4, batch_size=2)
    distill(_config(tiny_model_dir, data, tmp_path / "full", **kw))
    interrupt_then_resume(lambda resume: _config(tiny_model_dir, data, tmp_path / "cut", resume=resume, **kw), 2)
    a = load_file(str(tmp_path / "full/model/model.safetensors"))
    b = load_file(str(tmp_path / "cut/model/model.safetensors"))
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), key


def test_lora_options_are_checked(tmp_path):
    with pytest.raises(MuleError, match="--lora-rank"):
        DistillConfig(model="m", data=["d"], output=str(tmp_path), lora_rank=-1)
    with pytest.raises(MuleError, match="--fsdp"):
        DistillConfig(model="m", data=["d"], output=str(tmp_path), lora_rank=4, fsdp=True)
