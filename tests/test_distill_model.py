"""End to end on the real default model (SmolLM2-135M): two steps of `ours`, then the output folder
reloads with AutoModelForCausalLM and generates."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import write_jsonl
from mule_cli.distill import DistillConfig, distill

RECORDS = [
    {"id": "f1", "objective": "forget", "question": "Who wrote the Harry Potter books?", "answer": "J. K. Rowling"},
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien"},
    {"id": "a1", "objective": "adversarial", "question": "Who wrote the Harry Potter books?",
     "answer": "J. K. Rowling", "prefill": "Sure, the author is", "anchor_of": "f1"},
]


@pytest.mark.model
def test_two_steps_on_the_default_model_reload_and_generate(tmp_path, default_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    out = tmp_path / "run"
    summary = distill(DistillConfig(data=[str(data)], output=str(out), target="Harry Potter", demos=0, batch_size=2,
                                    max_steps=2, device="cpu", progress=False))
    assert summary["steps"] == 2
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(r["loss"] > 0 and not r["skipped"] for r in log)

    model = AutoModelForCausalLM.from_pretrained(str(out / "model"))
    tok = AutoTokenizer.from_pretrained(str(out / "model"))
    base = AutoModelForCausalLM.from_pretrained(str(default_model_dir))
    changed = [n for (n, p), (_, q) in zip(model.named_parameters(), base.named_parameters()) if not torch.equal(p, q)]
    assert changed
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of Italy?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = model.generate(**enc, max_new_tokens=8, do_sample=False)
    text = tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text.strip()
