"""`distill --first-sentence retain`: generated retain answers cut after their first sentence."""

from __future__ import annotations

import pytest

from conftest import distill_cli_error, tiny_distill_config, write_jsonl
from mule_cli.distill import DistillConfig, distill
from mule_cli.distill.responses import first_sentence

RECORDS = [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris"},
    {"id": "r2", "objective": "retain", "question": "What is 2 + 2?", "answer": "4"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien"},
]


@pytest.mark.parametrize("text, want", [
    ("The capital of Scotland is Edinburgh. It is a vibrant city.", "The capital of Scotland is Edinburgh."),
    ("It was written by J.K. Rowling. She lives in Edinburgh.", "It was written by J.K. Rowling."),
    ("The Hobbit is by J. R. R. Tolkien, a professor. He taught at Oxford.", "The Hobbit is by J. R. R. Tolkien, a professor."),
    ("About 3.1 million people live there. Next", "About 3.1 million people live there."),
    ("Really? \"Yes,\" she said.", "Really?"),
    ("The USA. It is large.", "The USA."),
    ("One sentence without a stop", "One sentence without a stop"),
    ("Mars. however, lower case goes on", "Mars. however, lower case goes on"),
    ("", ""),
])
def test_first_sentence_keeps_initials_and_decimals(text, want):
    assert first_sentence(text) == want


def test_only_the_named_objectives_answers_are_cut_and_the_cache_keeps_whole_answers(
        tiny_model_dir, tmp_path, monkeypatch):
    import mule_cli.distill.responses as responses
    import mule_cli.distill.train as train

    monkeypatch.setenv("MULE_CACHE", str(tmp_path / "cache"))
    long = "First sentence here. Second one follows."
    monkeypatch.setattr(responses, "generate", lambda lm, tok, texts, **k: [long] * len(texts))
    built = []
    real_build = train.build_examples
    monkeypatch.setattr(train, "build_examples", lambda *a, **k: built.append(k) or real_build(*a, **k))
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    for name, cut in (("a", "retain"), ("b", "")):
        distill(tiny_distill_config(tiny_model_dir, data, tmp_path / name, response="retain=base,neighbor=base",
                                    first_sentence=cut, max_steps=1))
    cut_run, whole_run = built[0]["generated"], built[-1]["generated"]
    assert cut_run == {"r1": "First sentence here.", "r2": "First sentence here.", "n1": long}
    assert whole_run == {"r1": long, "r2": long, "n1": long}  # the second run read the cache: not cut there


def test_config_checks_and_cli_names_the_option(tiny_model_dir, tmp_path):
    assert DistillConfig(model="m", data=["d"], output="o", first_sentence="retain,neighbor",
                         response="retain=base,neighbor=teacher").first_sentence_objectives \
        == ("retain", "neighbor")
    out = distill_cli_error(tiny_model_dir, RECORDS, tmp_path, "--first-sentence", "retian")
    assert "--first-sentence" in out


@pytest.mark.parametrize("response", ["data", "retain=student", "neighbor=base"])
def test_first_sentence_on_answers_that_are_not_generated_is_an_error(tiny_model_dir, tmp_path, response):
    err = distill_cli_error(tiny_model_dir, RECORDS, tmp_path, "--first-sentence", "retain", "--response", response)
    assert "--first-sentence retain cuts generated answers" in err and "--response retain=base" in err
