"""`--no-eot OBJECTIVES`: those responses stop before the end-of-turn token, on both sides alike."""

from __future__ import annotations

import json

import pytest

from conftest import distill_cli_error, tiny_distill_config, write_jsonl
from mule_cli.distill import DistillConfig, distill
from mule_cli.distill.batches import build_examples
from mule_cli.distill.config import config_changes
from mule_cli.errors import MuleError
from mule_cli.intentions import from_target

RECORDS = [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
    {"id": "a1", "objective": "adversarial", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley",
     "prefill": "Sure, here is the answer:"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien"},
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris"},
]


def test_named_objectives_lose_only_their_end_of_turn_token(tokenizer):
    prompts = from_target("Harry Potter")
    kw = dict(method="ours", prompts=prompts, n_demos=1)
    full = {e.id: e for e in build_examples(RECORDS, tokenizer, **kw)}
    cut = {e.id: e for e in build_examples(RECORDS, tokenizer, no_eot=("forget", "neighbor"), **kw)}
    eos = tokenizer.eos_token_id
    for rid in ("f1", "n1"):
        assert full[rid].response_ids[-1] == eos and eos not in cut[rid].response_ids
        assert cut[rid].response_ids == full[rid].response_ids[:-1]
        # both contexts shrink by the same token, so row j still predicts the same token on both sides
        assert cut[rid].student_ids == full[rid].student_ids[:-1]
        assert cut[rid].teacher_ids == full[rid].teacher_ids[:-1]
    for rid in ("a1", "r1"):
        assert cut[rid].response_ids == full[rid].response_ids and cut[rid].response_ids[-1] == eos


def test_option_is_canonical_checked_and_a_resume_key():
    cfg = DistillConfig(target="HP", no_eot=" neighbor, forget,neighbor")
    assert cfg.no_eot == "forget,neighbor" and cfg.no_eot_objectives == ("forget", "neighbor")
    assert DistillConfig(target="HP", no_eot="none").no_eot_objectives == ()
    with pytest.raises(MuleError, match="--no-eot: 'neighbour' is not an objective"):
        DistillConfig(target="HP", no_eot="neighbour")
    saved = {k: getattr(DistillConfig(target="HP"), k) for k in DistillConfig.RESUME_KEYS}
    assert config_changes(saved, cfg) == ["no_eot"]
    del saved["no_eot"]  # a checkpoint older than the option resumes as the default (every stop trained)
    assert config_changes(saved, DistillConfig(target="HP")) == []


def test_training_runs_and_logs_the_option(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    out = tmp_path / "run"
    summary = distill(tiny_distill_config(tiny_model_dir, data, out, no_eot="forget,adversarial,neighbor", max_steps=2))
    assert summary["steps"] == 2 and (out / "model").is_dir()
    assert json.loads((out / "run.json").read_text())["options"]["no_eot"] == "forget,neighbor,adversarial"


def test_cli_typo_is_a_one_line_error(tiny_model_dir, tmp_path):
    output = distill_cli_error(tiny_model_dir, RECORDS, tmp_path, "--no-eot", "forgett")
    assert "--no-eot: 'forgett' is not an objective" in output
