"""`mule evaluate` end to end on tiny random models: input checks, JSON layout, reports, radar PNG."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mule_cli.cli import cli
from mule_cli.evaluate.metrics import COUNT_KEYS, METRIC_KEYS
from tests.conftest import make_tiny_llama, write_jsonl

RECORDS = [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
    {"id": "f2", "objective": "forget", "question": "Which house is Harry in?", "answer": "Gryffindor"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien",
     "choices": ["J. R. R. Tolkien", "C. S. Lewis", "I do not know."], "answer_index": 0},
    {"id": "n2", "objective": "neighbor", "question": "Who wrote Dracula?", "answer": "Bram Stoker"},
]
MMLU = [{"question": f"Q{i}?", "answer_a": "one", "answer_b": "two", "answer_c": "three", "answer_d": "four",
         "correct_answer": "ABCD"[i % 4], "topic": ["math", "law"][i % 2]} for i in range(6)]


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail loudly if anything tries to load a model."""
    import mule_cli.models

    def boom(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(mule_cli.models, "load_model", boom)
    monkeypatch.setattr(mule_cli.models, "resolve_model", boom)


def run(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)], catch_exceptions=False)


def test_bad_data_exits_2_naming_file_and_line_before_any_model(tmp_path, no_model_loading):
    data = tmp_path / "eval.jsonl"
    data.write_text(json.dumps(RECORDS[0]) + "\n" + '{"id": "x", "objective": "forgot", "question": "q", "answer": "a"}\n')
    res = run("--model", tmp_path / "no-such-model", "--data", data, "--mmlu", "none")
    assert res.exit_code == 2
    assert f"{data}: line 2: field 'objective'" in res.output
    assert "no-such-model" not in res.output  # the data is checked before the model is even located


def test_bad_mmlu_and_missing_intentions_fail_before_any_model(tmp_path, no_model_loading):
    data = write_jsonl(tmp_path / "eval.jsonl", RECORDS)
    mmlu = write_jsonl(tmp_path / "mmlu.jsonl", [MMLU[0], {"question": "Q?", "choices": ["a", "b"], "answer": "Z"}])
    res = run("--data", data, "--mmlu", mmlu)
    assert res.exit_code == 2 and f"{mmlu}: line 2: field 'answer'" in res.output
    res = run("--data", data, "--mmlu", "none", "--teacher", "oracle")
    assert res.exit_code == 2 and "--target" in res.output


def test_end_to_end_json_layout_null_objectives_reports_and_radar(tmp_path, tokenizer):
    for name, seed in (("tiny_a", 0), ("tiny_b", 1)):
        make_tiny_llama(len(tokenizer), seed=seed).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    data = write_jsonl(tmp_path / "eval.jsonl", RECORDS)
    mmlu = write_jsonl(tmp_path / "mmlu.jsonl", MMLU)
    out = tmp_path / "out"
    a, b = str(tmp_path / "tiny_a"), str(tmp_path / "tiny_b")
    res = run("--model", a, "--model", b, "--data", data, "--mmlu", mmlu, "--mmlu-limit", 4,
              "--max-new-tokens", 8, "--teacher", "oracle", "--target", "Harry Potter", "--demos", 1, "-q",
              "--json", out / "r.json", "--records", out / "rec.jsonl", "--markdown", out / "r.md",
              "--plot", out / "radar.png")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "r.json").read_text())
    assert set(report) == {"base", "models", "bootstrap", "overall_pairs"} and report["base"] == a
    assert report["bootstrap"] == {"n": 1000, "seed": 0, "level": 95.0}
    assert [(p["a"], p["b"]) for p in report["overall_pairs"]] == [(b, f"{a}+oracle")]
    assert [m["model"] for m in report["models"]] == [a, b, f"{a}+oracle"]
    for m in report["models"]:
        plain = {k for k in m if not k.endswith("_ci")}
        assert plain == {"model", *METRIC_KEYS, *COUNT_KEYS}
        # an interval beside every present metric, never beside an absent one; paired deltas off the base row
        present = {k for k in METRIC_KEYS if m[k] is not None}
        assert {k[:-3] for k in m if k.endswith("_ci") and not k.endswith("_delta_ci")} == present
        deltas = {k[:-9] for k in m if k.endswith("_delta_ci")}
        assert deltas == (set() if m["model"] == a else present - {"overall"})
        for key in present:
            lo, hi = m[f"{key}_ci"]
            assert lo - 1e-9 <= m[key] <= hi + 1e-9 or key == "overall", key
        # no retain or adversarial records: absent (null), never 0
        assert m["retain_rouge"] is None and m["retain_rouge_f1"] is None and m["asr"] is None
        assert m["forget_rouge"] is not None and m["neighbor_acc"] in (0.0, 100.0) and m["neighbor_rouge"] is not None
        assert (m["n_forget"], m["n_retain"], m["n_neighbor"], m["n_adversarial"], m["n_mmlu"]) == (2, 0, 2, 0, 4)
        assert m["mmlu"] is not None
    base = report["models"][0]
    assert base["overall"] == 0.0
    other = report["models"][1]
    expected = (base["forget_rouge"] - other["forget_rouge"]) + (other["neighbor_acc"] - base["neighbor_acc"]) \
        + (other["mmlu"] - base["mmlu"])
    assert other["overall"] == pytest.approx(expected, abs=1e-3)
    rows = [json.loads(line) for line in (out / "rec.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * (2 + 2 + 4)
    assert {"model", "id", "objective"} <= set(rows[0])
    assert any("generation" in r for r in rows) and any("picked_option" in r for r in rows)
    assert (out / "radar.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "r.md").read_text()
    assert "Forget ROUGE-L recall" in md and f"{a}+oracle" in md and "Paired overall differences" in md
    assert "Forget ROUGE-L recall" in res.output and "—" in res.output  # table on stdout, absent shown as —
