"""`--response OBJ=student`: on-policy records, regenerated from the current student every N steps."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import interrupt_then_resume, records, tiny_distill_config as config, write_jsonl
from mule_cli.distill import DistillConfig, distill
from mule_cli.errors import MuleError

RECORDS = records("f1 r1 r2 n1")



def weights(folder):
    return load_file(str(folder / "model" / "model.safetensors"))


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "data.jsonl", RECORDS)


@pytest.fixture
def calls(monkeypatch):
    """Record every student generation: the prompts and a fingerprint of the weights it ran with."""
    import mule_cli.distill.on_policy as on_policy

    seen = []
    real = on_policy.generate

    def spy(lm, tokenizer, prompts, **kw):
        seen.append({"prompts": list(prompts), "weights": sum(float(p.double().sum()) for p in lm.parameters()),
                     "training": lm.training})
        return real(lm, tokenizer, prompts, **kw)

    monkeypatch.setattr(on_policy, "generate", spy)
    return seen


def test_student_answers_are_regenerated_every_n_steps_from_the_current_weights(tiny_model_dir, data_file, tmp_path,
                                                                                 calls, tokenizer):
    from mule_cli.distill.batches import student_prompt

    distill(config(tiny_model_dir, data_file, tmp_path / "o", response="retain=student", student_refresh=2,
                   max_steps=5, batch_size=4, lr=1e-2))
    assert len(calls) == 3  # before steps 1, 3 and 5
    retain = [r for r in RECORDS if r["objective"] == "retain"]
    assert all(c["prompts"] == [student_prompt(tokenizer, r) for r in retain] for c in calls)  # plain context
    assert not any(c["training"] for c in calls)  # generated in eval mode
    assert len({round(c["weights"], 6) for c in calls}) == 3  # each from the weights of that moment


def test_training_on_student_answers_equals_training_on_those_answers_as_data(tiny_model_dir, data_file, tmp_path,
                                                                              monkeypatch):
    import mule_cli.distill.on_policy as on_policy

    monkeypatch.setattr(on_policy, "generate", lambda lm, tok, prompts, **kw: ["It is blue."] * len(prompts))
    # demos=0: demonstrations show data answers, which differ between the two runs by construction
    distill(config(tiny_model_dir, data_file, tmp_path / "a", response="retain=student", max_steps=2, batch_size=4,
                   demos=0))
    as_data = [dict(r, answer="It is blue.") if r["objective"] == "retain" else r for r in RECORDS]
    distill(config(tiny_model_dir, write_jsonl(tmp_path / "d.jsonl", as_data), tmp_path / "b", max_steps=2,
                   batch_size=4, demos=0))
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_between_refreshes_uses_the_saved_answers(tiny_model_dir, data_file, tmp_path, calls):
    opts = dict(response="retain=student", student_refresh=2, max_steps=4, batch_size=4, lr=1e-2)
    distill(config(tiny_model_dir, data_file, tmp_path / "full", **opts))
    assert len(calls) == 2
    interrupt_then_resume(lambda resume: config(tiny_model_dir, data_file, tmp_path / "cut", resume=resume, **opts), 3)
    assert len(calls) == 4  # the resumed run regenerates nothing before step 4 (it is not a refresh step)
    a, b = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)


def test_student_refresh_is_checked():
    with pytest.raises(MuleError, match="--student-refresh"):
        DistillConfig(model="m", data=["d"], output="o", response="retain=student", student_refresh=0)
    with pytest.raises(MuleError, match="--fsdp"):
        DistillConfig(model="m", data=["d"], output="o", response="retain=student", fsdp=True)
