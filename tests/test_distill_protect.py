"""`--protect OBJECTIVES`: the other objectives' gradient loses its component against the protected one's."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_distill_config as config, write_jsonl
from mule_cli.distill import DistillConfig, distill
from mule_cli.distill.projection import ConflictProjector, parse_protect, project_conflict
from mule_cli.errors import MuleError
from mule_cli.records import OBJECTIVES

RECORDS = [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris"},
    {"id": "r2", "objective": "retain", "question": "What is 2 + 2?", "answer": "4"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien"},
]


def test_a_conflicting_gradient_loses_exactly_its_component_along_the_protected_one():
    g = torch.Generator().manual_seed(0)
    p = [torch.randn(3, 4, generator=g), torch.randn(5, generator=g)]
    o = [-2 * p[0] + torch.randn(3, 4, generator=g) * 0.1, -2 * p[1]]  # points against p
    out, cos = project_conflict(o, p)
    assert cos < 0
    flat = lambda ts: torch.cat([t.flatten().double() for t in ts])  # noqa: E731
    o_proj = flat(out) - flat(p)
    scale = float(flat(o).norm() * flat(p).norm())
    assert abs(float(o_proj @ flat(p))) < 1e-6 * scale  # orthogonal to p after projection (fp32 tensors)
    assert torch.allclose(o_proj, flat(o) - (flat(o) @ flat(p)) / (flat(p) @ flat(p)) * flat(p), atol=1e-6)
    assert float(flat(out) @ flat(p)) > 0  # the step no longer increases the protected loss to first order


def test_an_agreeing_gradient_is_kept_whole_and_a_zero_protected_gradient_changes_nothing():
    p = [torch.tensor([1.0, 0.0]), torch.tensor([2.0])]
    o = [torch.tensor([0.5, 3.0]), torch.tensor([1.0])]
    out, cos = project_conflict(o, p)
    assert cos > 0 and all(torch.equal(a, b + c) for a, b, c in zip(out, o, p))
    out, cos = project_conflict(o, [torch.zeros(2), torch.zeros(1)])
    assert cos == 0.0 and all(torch.equal(a, b) for a, b in zip(out, o))


def test_the_projector_collects_the_protected_gradient_outside_grad_and_writes_the_projected_sum():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    y = lin(x)
    kept, other = y[:, 0].pow(2).sum(), -y[:, 0].pow(2).sum() * 3 + y[:, 1].sum()
    params = list(lin.parameters())
    want_p = torch.autograd.grad(kept, params, retain_graph=True)
    want_o = torch.autograd.grad(other, params, retain_graph=True)
    projector = ConflictProjector(params)
    projector.add(kept)
    assert all(q.grad is None for q in params)  # nothing landed in .grad yet
    other.backward()
    cos = projector.apply()
    want, want_cos = project_conflict(list(want_o), list(want_p))
    assert cos == pytest.approx(want_cos) and cos < 0
    assert all(torch.allclose(q.grad, w) for q, w in zip(params, want))
    assert projector.apply() is None  # collected gradients are used once


def _one_step(tiny_model_dir, data_file, out, **kw):
    distill(config(tiny_model_dir, data_file, out, max_steps=1, batch_size=4, lr=1e-2, **kw))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return load_file(str(out / "model" / "model.safetensors")), log


@pytest.mark.parametrize("method", ["ours", "bild"])
def test_protect_retain_changes_the_update_exactly_when_the_gradients_conflict(tiny_model_dir, tmp_path, method):
    data_file = write_jsonl(tmp_path / "data.jsonl", RECORDS)
    plain, _ = _one_step(tiny_model_dir, data_file, tmp_path / "plain", method=method, amplify=2.0)
    guarded, log = _one_step(tiny_model_dir, data_file, tmp_path / "guarded", method=method, amplify=2.0,
                             protect="retain")
    cos = log[0]["protect_cosine"]
    # unprojected, the two runs differ only in the order gradients are summed (two backward passes against
    # one): rounding, which one Adam step at lr 1e-2 amplifies to 1.6e-6 here (measured 2026-12-03)
    same = all(torch.allclose(plain[k], guarded[k], atol=1e-5) for k in plain)
    assert same == (cos >= 0), cos
    run = json.loads((tmp_path / "guarded" / "run.json").read_text())
    assert run["options"]["protect"] == "retain"


def test_protect_options_are_checked():
    assert parse_protect("retain, neighbor") == tuple(o for o in OBJECTIVES if o in ("retain", "neighbor"))
    assert DistillConfig(protect="neighbor,retain").protect == DistillConfig(protect="retain,neighbor").protect
    assert parse_protect("none") == () and parse_protect(None) == ()
    with pytest.raises(MuleError, match="not an objective"):
        DistillConfig(protect="retian")
    with pytest.raises(MuleError, match="nothing to project"):
        DistillConfig(protect="forget,retain,neighbor,adversarial")
    with pytest.raises(MuleError, match="--fsdp"):
        DistillConfig(protect="retain", fsdp=True)


def test_a_forget_gradient_opposite_to_retain_is_removed_whole(tiny_model_dir, tmp_path):
    """GradDiff on one fact both forgotten and retained: the forget gradient is exactly minus the retain
    one, so the protected step is the retain-only step."""
    fact = {"question": "What is the capital of France?", "answer": "Paris"}
    data_file = write_jsonl(tmp_path / "data.jsonl", [{"id": "f1", "objective": "forget", **fact},
                                                      {"id": "r1", "objective": "retain", **fact}])
    plain, _ = _one_step(tiny_model_dir, data_file, tmp_path / "plain", method="graddiff")
    retain_only, _ = _one_step(tiny_model_dir, data_file, tmp_path / "retain", method="graddiff",
                               weights="forget=0")
    guarded, log = _one_step(tiny_model_dir, data_file, tmp_path / "guarded", method="graddiff", protect="retain")
    assert log[0]["protect_cosine"] == pytest.approx(-1.0, abs=1e-4)
    # Adam's first step is about lr·sign(g): the fp32 residual of the projection moves a weight by at most ~1% of it
    assert all(torch.allclose(guarded[k], retain_only[k], atol=1e-4) for k in plain)
    assert not all(torch.allclose(plain[k], retain_only[k], atol=1e-3) for k in plain)
