"""`--retain-weight` with a distillation method: an NLL term on retain answers beside the top-K loss."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_distill_config, write_jsonl
from mule_cli.distill import DistillConfig, distill
from mule_cli.distill.batches import build_examples, collate
from mule_cli.distill.forward import ResponseLogits
from mule_cli.distill.methods import loss_sums, spec_for
from mule_cli.distill.refusal_anchors import refusal_anchor_records
from mule_cli.intentions import from_target

RECORDS = [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris is"},
    {"id": "r2", "objective": "retain", "question": "What is 2 + 2?", "answer": "It is 4"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien"},
]


class OwnLogits:
    """A teacher that returns the student's logits: the distillation terms are exactly zero."""

    def __init__(self, logits):
        self.value = logits

    def logits(self, batch):
        return self.value


def _terms(tiny_model, tokenizer, retain_weight, method="ours"):
    records = RECORDS + refusal_anchor_records(RECORDS, ["neighbor"])
    ex = build_examples(records, tokenizer, method=method, prompts=from_target("Harry Potter"))
    batch = collate(ex, tokenizer.pad_token_id)
    with torch.no_grad():
        s = ResponseLogits(tiny_model)(batch.student.input_ids, batch.student.attention_mask,
                                       batch.student.positions).float()
    cfg = DistillConfig(data=["x"], method=method, retain_weight=retain_weight, progress=False, loss_impl="reference")
    return batch, s, loss_sums(spec_for(cfg), cfg, batch, s, OwnLogits(s.clone()))


@pytest.mark.parametrize("method", ["ours", "duet", "bild"])
def test_retain_nll_sums_the_answer_tokens_of_plain_retain_records_only(tiny_model, tokenizer, method):
    batch, s, terms = _terms(tiny_model, tokenizer, 2.5, method)
    lp = torch.log_softmax(s, -1)
    expected = 0.0
    for row, e in enumerate(batch.examples):
        if e.objective == "retain" and not e.anchor:
            n = e.n
            expected -= lp[row, torch.arange(n), batch.student.labels[row, :n]].sum().item()
    assert [e.id for e in batch.examples if e.anchor] == ["n1~refusal"]  # the anchor is in the batch, not summed
    assert terms["retain"].item() == pytest.approx(2.5 * expected, rel=1e-5, abs=1e-4)
    assert terms["forget"].item() == pytest.approx(0.0, abs=1e-6)  # other objectives untouched


def test_distillation_methods_have_no_retain_nll_by_default(tiny_model, tokenizer):
    _, _, terms = _terms(tiny_model, tokenizer, None)
    assert terms["retain"].item() == pytest.approx(0.0, abs=1e-6)


def test_retain_weight_changes_a_distill_run_and_is_recorded(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    runs = {}
    for w in (None, 3.0):
        out = tmp_path / f"w{w}"
        runs[w] = distill(tiny_distill_config(tiny_model_dir, data, out, retain_weight=w, batch_size=4, max_steps=1))
    assert runs[3.0]["last"]["loss_retain"] > runs[None]["last"]["loss_retain"] + 0.1
    assert json.loads((tmp_path / "w3.0" / "run.json").read_text())["options"]["retain_weight"] == 3.0
