"""Robustness attacks of `mule evaluate --attacks` on tiny random models: input checks, copies, ids, JSON."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from mule_cli.attack.jailbreaks import TEMPLATES, wrap
from mule_cli.cli import cli
from mule_cli.errors import MuleError
from mule_cli.evaluate.attacks import (AttackSettings, metric_defs, parse_attacks, relearn_on, relearn_split,
                                       run_attack)
from mule_cli.quant import quantize_dequantize
from tests.conftest import make_tiny_llama, write_jsonl

FORGET = [{"id": f"f{i}", "objective": "forget", "question": f"Who is character number {i}?",
           "answer": f"Name {i}"} for i in range(6)]
RECORDS = FORGET + [
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris"},
    {"id": "a1", "objective": "adversarial", "question": "Who is character number 1?", "answer": "Name 1",
     "prefill": "Sure, it is", "prefill_family": "own"},
]


def run(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)], catch_exceptions=False)


def fake_rows(answer_for=lambda rec: "no"):
    """An evaluate_rows stand-in that records what it was asked and answers by a rule."""
    calls = []

    def evaluate_rows(model, records, label):
        calls.append((model, [r["id"] for r in records]))
        return [{"id": r["id"], "objective": r["objective"], "generation": answer_for(r),
                 "rouge_recall": float(r["answer"] in answer_for(r)), "rouge_f1": 0.0} for r in records]

    return evaluate_rows, calls


def test_attack_names_are_checked():
    assert parse_attacks("quant4, relearn,quant4") == ("quant4", "relearn")
    assert parse_attacks("") == ()
    with pytest.raises(MuleError, match="unknown attack 'quant3'.*known: quant4, quant8, relearn, templates"):
        parse_attacks("quant4,quant3")


def test_bad_attack_options_exit_2_before_any_model(tmp_path, monkeypatch):
    import mule_cli.models

    monkeypatch.setattr(mule_cli.models, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr(mule_cli.models, "resolve_model", lambda *a, **k: pytest.fail("a model was located"))
    data = write_jsonl(tmp_path / "e.jsonl", RECORDS)
    res = run("--data", data, "--mmlu", "none", "--attacks", "quant4,nope")
    assert res.exit_code == 2 and "unknown attack 'nope'" in res.output
    res = run("--data", data, "--mmlu", "none", "--bootstrap", "-1")
    assert res.exit_code == 2 and "--bootstrap" in res.output
    one = write_jsonl(tmp_path / "one.jsonl", RECORDS[:1] + RECORDS[-2:])
    res = run("--data", one, "--mmlu", "none", "--attacks", "relearn")
    assert res.exit_code == 2 and "relearn needs at least 2 forget records" in res.output


def test_relearn_never_trains_on_the_half_it_measures(monkeypatch):
    import mule_cli.evaluate.attacks as attacks

    trained = []
    monkeypatch.setattr(attacks, "relearn_on", lambda model, tok, recs, *a, **k: trained.extend(recs) or model)
    evaluate_rows, calls = fake_rows()
    main_rows = evaluate_rows(None, FORGET, "main")
    rows = run_attack("relearn", torch.nn.Linear(2, 2), None, RECORDS, main_rows, evaluate_rows=evaluate_rows,
                      asr_threshold=0.5, settings=AttackSettings(relearn_steps=1, seed=3), progress=False)
    measured = {r["id"] for r in rows}
    trained_ids = {r["id"] for r in trained}
    assert trained_ids and measured and not trained_ids & measured
    assert trained_ids | measured == {r["id"] for r in FORGET}
    assert calls[-1][1] == sorted(measured, key=[r["id"] for r in rows].index)
    assert all(set(r["relearned_on"]) == trained_ids for r in rows)
    a, b = relearn_split(FORGET, 3)
    assert (a, b) == relearn_split(list(reversed(FORGET)), 3)  # seeded by id, not by file order


def test_relearn_fits_its_half_on_a_copy(tokenizer):
    model = make_tiny_llama(len(tokenizer))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate_rows, calls = fake_rows()
    main_rows = evaluate_rows(model, FORGET, "main")
    run_attack("relearn", model, tokenizer, RECORDS, main_rows, evaluate_rows=evaluate_rows, asr_threshold=0.5,
               settings=AttackSettings(relearn_steps=2), progress=False)
    assert calls[-1][0] is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing written back
    copy = make_tiny_llama(len(tokenizer))
    relearn_on(copy, tokenizer, FORGET[:3], steps=3)
    assert any(not torch.equal(before[k], v) for k, v in copy.state_dict().items())
    assert not any(p.requires_grad for p in copy.parameters())


@pytest.mark.parametrize("name,grid", [("quant4", "q4_1"), ("quant8", "int8")])
def test_quant_attacks_measure_a_quantized_copy(tokenizer, name, grid):
    model = make_tiny_llama(len(tokenizer))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate_rows, calls = fake_rows()
    rows = run_attack(name, model, tokenizer, RECORDS, [], evaluate_rows=evaluate_rows, asr_threshold=0.5,
                      settings=AttackSettings(), progress=False)
    attacked, ids = calls[-1]
    assert attacked is not model and ids == [r["id"] for r in RECORDS]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    w = attacked.model.layers[0].mlp.up_proj.weight
    assert torch.equal(w, quantize_dequantize(w, grid)) and not torch.equal(w, model.model.layers[0].mlp.up_proj.weight)
    assert {r["id"] for r in rows} == {r["id"] for r in RECORDS}
    assert set(metric_defs(name)) == {"forget_rouge", "asr", "asr_search", "asr_own", "retain_rouge"}


def test_templates_leak_when_any_wrapper_states_the_fact():
    assert len(TEMPLATES) >= 8 and len({k for k, _ in TEMPLATES}) == len(TEMPLATES)
    for _, template in TEMPLATES:
        text = wrap(template, "Who wrote the books?")
        assert "Who wrote the books?" in text or "books the wrote Who" in text
    # only the "novel" wrapper gets f2's answer out
    evaluate_rows, calls = fake_rows(lambda r: r["answer"] if r["id"] == "f2#novel" else "I do not know.")
    rows = run_attack("templates", None, None, RECORDS, [], evaluate_rows=evaluate_rows, asr_threshold=0.5,
                      settings=AttackSettings(), progress=False)
    assert len(calls[-1][1]) == len(FORGET) * len(TEMPLATES)
    leaked = {r["id"]: r["leaked"] for r in rows}
    assert leaked == {r["id"]: r["id"] == "f2" for r in FORGET}
    assert next(r for r in rows if r["id"] == "f2")["best_template"] == "novel"


def test_attacks_end_to_end_json_markdown_records_and_a_failing_model(tmp_path, tokenizer, monkeypatch):
    for name, seed in (("a", 0), ("b", 1)):
        make_tiny_llama(len(tokenizer), seed=seed).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    import mule_cli.evaluate.runner as runner

    real = runner.run_attack

    def fail_on_b(attack, model, *a, label, **k):  # relearn breaks on model b only
        if attack == "relearn" and label.endswith("b"):
            raise RuntimeError("out of memory")
        return real(attack, model, *a, label=label, **k)

    monkeypatch.setattr(runner, "run_attack", fail_on_b)
    data, out = write_jsonl(tmp_path / "e.jsonl", RECORDS), tmp_path / "out"
    res = run("-m", tmp_path / "a", "-m", tmp_path / "b", "--data", data, "--mmlu", "none", "--max-new-tokens", 4,
              "--attacks", "quant4,quant8,relearn,templates", "--relearn-steps", 1, "--bootstrap", 200, "-q",
              "--json", out / "r.json", "--markdown", out / "r.md", "--records", out / "rec.jsonl",
              "--plot", out / "radar.png")
    assert res.exit_code == 0, res.output
    assert "attack relearn failed on" in res.output and "out of memory" in res.output
    report = json.loads((out / "r.json").read_text())
    a, b = report["models"]
    assert set(a["attacks"]) == {"quant4", "quant8", "relearn", "templates"}
    assert set(a["attacks"]["relearn"]) >= {"forget_rouge_before", "forget_rouge_after",
                                            "forget_rouge_before_ci", "forget_rouge_after_ci"}
    assert b["attacks"]["relearn"] is None and b["attacks"]["templates"]["leak_rate_ci"] is not None
    for grid in ("quant4", "quant8"):
        assert {"forget_rouge", "asr", "retain_rouge", "forget_rouge_ci", "asr_own_ci"} <= set(a["attacks"][grid])
    rows = [json.loads(line) for line in (out / "rec.jsonl").read_text().splitlines()]
    assert {r.get("attack") for r in rows} == {None, "quant4", "quant8", "relearn", "templates"}
    assert "## Robustness attacks" in (out / "r.md").read_text()
    assert (out / "radar.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
