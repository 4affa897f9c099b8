"""`distill --center-logits`: the teacher shifted onto the student's level before the top-K Smooth-L1."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import distill_cli_error, tiny_distill_config, write_jsonl
from mule_cli.distill import DistillConfig, distill
from mule_cli.distill.batches import build_examples, collate
from mule_cli.distill.forward import ResponseLogits
from mule_cli.distill.methods import loss_sums, spec_for
from mule_cli.intentions import from_target
from mule_cli.kernels import reference_loss
from mule_cli.losses import centered_teacher, teacher_topk_smooth_l1
from mule_cli.losses.topk import selected_set

RECORDS = [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris is"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien"},
]


def _logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("k", [1, 5, 50])
@pytest.mark.parametrize("union", [True, False])
def test_the_mean_gap_over_the_selected_set_is_zero_after_centering(k, union):
    s, t = _logits(3, 4, 50), _logits(3, 4, 50, seed=1) - 9.0
    c = centered_teacher(s, t, k, union)
    u = selected_set(s, t, k, union)
    assert torch.equal(u, selected_set(s, c, k, union))  # a per-row constant keeps the teacher's top-k
    gap = torch.where(u, s - c, torch.zeros(()))
    assert torch.allclose(gap.sum(-1) / u.sum(-1), torch.zeros(3, 4), atol=1e-5)
    assert torch.allclose(c - t, (c - t)[..., :1].expand_as(t), atol=1e-5)  # one constant per position


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_a_teacher_that_differs_by_a_constant_per_position_gives_zero_loss(dtype):
    s = _logits(2, 6, 64).to(dtype)
    shift = torch.linspace(-30, 30, 12).reshape(2, 6, 1)
    t = (s.float() - shift).to(dtype)
    valid = torch.ones(2, 6, dtype=torch.bool)
    raw = reference_loss(s.float(), t.float(), k=8, beta=1.0, valid=valid)
    c = centered_teacher(s, t, 8)
    assert c.dtype == dtype
    centered = reference_loss(s.float(), c.float(), k=8, beta=1.0, valid=valid)
    assert raw.item() > 10  # the raw loss is all offset
    tol = 1e-5 if dtype == torch.float32 else 0.25  # half precision rounds the shifted logits
    assert centered.item() == pytest.approx(0.0, abs=tol)


def test_relative_preferences_survive_centering():
    s = torch.zeros(1, 1, 10)
    t = torch.full((1, 1, 10), -20.0)
    t[0, 0, 3] = -15.0  # the teacher prefers token 3 by 5 over the rest
    c = centered_teacher(s, t, 10)
    assert (c[0, 0, 3] - c[0, 0, 0]).item() == pytest.approx(5.0)
    loss = reference_loss(s, c, k=10, beta=1.0, valid=torch.ones(1, 1, dtype=torch.bool))
    assert loss.item() > 0  # the preference is still taught


def test_a_position_with_a_non_finite_logit_is_left_unshifted():
    s, t = _logits(1, 3, 20), _logits(1, 3, 20, seed=2) - 5
    s[0, 1, 4] = float("inf")
    t[0, 2, 7] = float("nan")
    c = centered_teacher(s, t, 20)
    assert torch.equal(c[0, 1], t[0, 1])
    assert torch.isnan(c[0, 2, 7]) and torch.equal(c[0, 2, :7], t[0, 2, :7])
    assert not torch.equal(c[0, 0], t[0, 0])


def test_duet_centres_over_the_teacher_top_k_only():
    s, t = _logits(2, 3, 40), _logits(2, 3, 40, seed=3) + 4
    c = centered_teacher(s, t, 5, union=False)
    valid = torch.ones(2, 3, dtype=torch.bool)
    mask = selected_set(s, t, 5, union=False)
    assert torch.allclose(torch.where(mask, s - c, torch.zeros(())).sum(-1), torch.zeros(2, 3), atol=1e-4)
    assert teacher_topk_smooth_l1(s, c, valid, k=5, beta=1.0) < teacher_topk_smooth_l1(s, t, valid, k=5, beta=1.0)


class ShiftedLogits:
    """A teacher whose logits are the student's minus a constant: only the level differs."""

    def __init__(self, logits, shift):
        self.value = logits - shift

    def logits(self, batch):
        return self.value


@pytest.mark.parametrize("method", ["ours", "duet"])
def test_the_distill_loss_ignores_a_teacher_level_shift_only_when_asked(tiny_model, tokenizer, method):
    ex = build_examples(RECORDS, tokenizer, method=method, prompts=from_target("Harry Potter"))
    batch = collate(ex, tokenizer.pad_token_id)
    with torch.no_grad():
        s = ResponseLogits(tiny_model)(batch.student.input_ids, batch.student.attention_mask,
                                       batch.student.positions).float()
    terms = {}
    for center in (False, True):
        cfg = DistillConfig(data=["x"], method=method, center_logits=center, progress=False, loss_impl="reference")
        terms[center] = loss_sums(spec_for(cfg), cfg, batch, s, ShiftedLogits(s.clone(), 9.0))
    for obj in ("forget", "retain", "neighbor"):
        assert terms[False][obj].item() > 1.0
        assert terms[True][obj].item() == pytest.approx(0.0, abs=1e-4)


def test_center_logits_changes_a_run_and_is_recorded(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    runs = {}
    for center in (False, True):
        out = tmp_path / f"c{center}"
        runs[center] = distill(tiny_distill_config(tiny_model_dir, data, out, center_logits=center, batch_size=3,
                                                   max_steps=1, amplify=2.0))
    assert runs[True]["last"]["loss"] != pytest.approx(runs[False]["last"]["loss"], rel=1e-3)
    assert json.loads((tmp_path / "cTrue" / "run.json").read_text())["options"]["center_logits"] is True


def test_center_logits_is_refused_for_methods_without_a_smooth_l1(tiny_model_dir, tmp_path):
    err = distill_cli_error(tiny_model_dir, RECORDS, tmp_path, "--method", "bild", "--center-logits")
    assert "--center-logits applies to the Smooth-L1 losses of ours and duet only" in err
