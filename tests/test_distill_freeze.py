"""`--freeze NAMES`: named weights stay at the base's values; the rest trains."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import distill_cli_error, tiny_distill_config, write_jsonl
from mule_cli.distill import distill
from mule_cli.distill.freeze import freeze, parse_freeze
from mule_cli.errors import MuleError

RECORDS = [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien"},
]


def test_frozen_weights_are_saved_unchanged_and_the_others_train(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    out = tmp_path / "run"
    distill(tiny_distill_config(tiny_model_dir, data, out, freeze="embed_tokens,layers.0.", max_steps=2))
    before = load_file(str(next(tiny_model_dir.glob("*.safetensors"))))
    after = load_file(str(out / "model" / "model.safetensors"))
    frozen = [k for k in after if "embed_tokens" in k or "layers.0." in k]
    trained = [k for k in after if k not in frozen and k.endswith("proj.weight")]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in trained)


def test_a_pattern_that_matches_nothing_is_an_error(tiny_model):
    with pytest.raises(MuleError, match="no weight name contains 'emb_tokens'"):
        freeze(tiny_model, ("emb_tokens",))


def test_freezing_everything_is_an_error(tiny_model):
    with pytest.raises(MuleError, match="leaves no weight to train"):
        freeze(tiny_model, ("weight",))


def test_parse_freeze_drops_blanks_and_repeats():
    assert parse_freeze(" embed_tokens, ,layers.0.,embed_tokens") == ("embed_tokens", "layers.0.")
    assert parse_freeze(None) == () and parse_freeze("") == ()


def test_cli_freeze_typo_is_a_one_line_error(tiny_model_dir, tmp_path):
    output = distill_cli_error(tiny_model_dir, RECORDS, tmp_path, "--freeze", "embed_tokenz")
    assert "--freeze: no weight name contains 'embed_tokenz'" in output
