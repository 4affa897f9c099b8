"""CLI surface: help everywhere with examples, version, errors before any model loads."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from mule_cli import __version__
from mule_cli.cli import cli

COMMANDS = ["standardize", "attack", "distill", "evaluate"]


def test_group_help_lists_subcommands():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    for name in COMMANDS:
        assert name in res.output


@pytest.mark.parametrize("name", COMMANDS)
def test_subcommand_help_has_example(name):
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example" in res.output and "mule " in res.output


def test_version():
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_bad_data_fails_before_model_load(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    # A model name that would fail to load proves the data error comes first.
    res = subprocess.run([sys.executable, "-m", "mule_cli.cli", "evaluate", "--data", str(bad)],
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert "bad.jsonl" in res.stderr and "line 1" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_model_is_a_clear_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "mule_cli.cli", "distill", "--model", "no-such-model",
                          "--data", str(tmp_path / "x.jsonl")], capture_output=True, text=True)
    assert res.returncode != 0
    assert "no-such-model" in res.stderr and "Traceback" not in res.stderr


def test_distill_cli_defaults_are_the_configs(tmp_path, monkeypatch, default_model_dir):
    """`mule distill --data D` trains exactly DistillConfig(data=[D]): defaults are declared once, in the
    config, and the options take them from it (without that, they would hand None to the config)."""
    import mule_cli.distill as lib
    from mule_cli.distill import DistillConfig

    seen = {}
    monkeypatch.setattr(lib, "distill", lambda cfg, records: seen.setdefault("cfg", cfg) and
                        {"model": "m", "steps": 0})
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "f1", "objective": "forget", "question": "Q?", "answer": "A"}\n')
    result = CliRunner().invoke(cli, ["distill", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].to_dict() == DistillConfig(data=[str(data)]).to_dict()
    # a baseline gets the baselines' defaults, not ours' (those options are resolved by the config)
    seen.clear()
    result = CliRunner().invoke(cli, ["distill", "--data", str(data), "--method", "npo"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].to_dict() == DistillConfig(data=[str(data)], method="npo").to_dict()
    help_text = " ".join(CliRunner().invoke(cli, ["distill", "--help"]).output.split())
    assert "[default: retain=base for ours/duet/bild, data for the baselines]" in help_text
    assert ("[default: forget=8,adversarial=16,neighbor=2 for ours, forget=2,adversarial=2,neighbor=2 for duet/bild, "
            "none for the baselines]") in help_text
    assert "[default: neighbor=base for ours, data for duet/bild, data for the baselines]" in help_text


def test_method_dependent_defaults():
    """ours/DUET/BiLD default to the best measured setting, the baselines to the plain one; what a user
    gives wins; no default anchors when retain weighs 0 (they train as retain)."""
    from mule_cli.distill import DistillConfig

    for method in ("ours", "duet", "bild"):
        cfg = DistillConfig(method=method)
        forget, adversarial, demos = (8.0, 16.0, "neighbor=base") if method == "ours" else (2.0, 2.0, "data")
        assert (cfg.amplify, cfg.refusal_anchors, cfg.response, cfg.demo_answers) == (  # measured for ours only
            {"forget": forget, "adversarial": adversarial, "neighbor": 2.0, "retain": 0.0}, "neighbor", "retain=base",
            demos)
        assert cfg.weights == {"forget": 2.0, "adversarial": 2.0, "neighbor": 2.0, "retain": 1.0}
    for method in ("sft", "ga", "graddiff", "npo", "simnpo"):
        cfg = DistillConfig(method=method)
        assert (cfg.amplify, cfg.refusal_anchors, cfg.response, cfg.demo_answers) == (0.0, "", "data", "data")
        assert set(cfg.weights.values()) == {1.0}
    mine = DistillConfig(amplify=0, response="data", refusal_anchors="", weights="forget=3")
    assert (mine.amplify, mine.response, mine.refusal_anchors, mine.weights["forget"], mine.weights["neighbor"]) \
        == (0.0, "data", "", 3.0, 1.0)
    assert DistillConfig(weights="retain=0").refusal_anchors == ""
