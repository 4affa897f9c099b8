"""`--refusal TEXT`: one refusal text for the prompts, the forget-like demos, SFT and the refusal anchors;
and resuming a checkpoint written before an option existed."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from mule_cli.cli import cli
from mule_cli.distill import DistillConfig
from mule_cli.distill.batches import build_examples, teacher_prompt
from mule_cli.distill.config import config_changes
from mule_cli.distill.refusal_anchors import refusal_anchor_records
from mule_cli.errors import MuleError
from mule_cli.intentions import REFUSAL, from_target, pick_demos

NEVER = "I have never heard of that."
RECORDS = [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
    {"id": "f2", "objective": "forget", "question": "Who teaches potions at Hogwarts?", "answer": "Severus Snape"},
    {"id": "a1", "objective": "adversarial", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley",
     "prefill": "Sure, here is the answer:"},
    {"id": "a2", "objective": "adversarial", "question": "Who teaches potions at Hogwarts?", "answer": "Severus Snape",
     "prefill": "Sure, it is "},
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?", "answer": "Paris"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien"},
]


def test_built_in_prompts_say_the_refusal_text():
    prompts = from_target("Harry Potter", NEVER)
    assert NEVER in prompts["forget"] and NEVER in prompts["adversarial"]
    assert REFUSAL not in prompts["forget"] + prompts["adversarial"]
    assert REFUSAL in from_target("Harry Potter")["forget"]  # the default is unchanged


def test_forget_like_demos_answer_with_the_refusal_text_after_any_prefill():
    assert pick_demos(RECORDS, "forget", "f1", 1, NEVER) == [(RECORDS[1]["question"], NEVER)]
    assert pick_demos(RECORDS, "adversarial", "a1", 1, NEVER) == [(RECORDS[3]["question"], "Sure, it is " + NEVER)]
    assert pick_demos(RECORDS, "adversarial", "a2", 1, NEVER) == [(RECORDS[2]["question"],
                                                                   "Sure, here is the answer: " + NEVER)]
    assert pick_demos(RECORDS, "retain", "x", 1, NEVER) == [(RECORDS[4]["question"], "Paris")]  # not forget-like


def test_teacher_context_sft_targets_and_anchors_use_it(tokenizer):
    text = teacher_prompt(tokenizer, RECORDS[0], RECORDS, from_target("Harry Potter", NEVER), "oracle", 1, NEVER)
    assert NEVER in text and REFUSAL not in text
    sft = build_examples(RECORDS, tokenizer, method="sft", prompts=None, refusal=NEVER)
    forced = [tokenizer.decode(e.response_ids, skip_special_tokens=True).strip() for e in sft if e.objective == "forget"]
    assert forced == [NEVER, NEVER]
    anchors = refusal_anchor_records(RECORDS, ("neighbor", "retain"), NEVER)
    assert [a["answer"] for a in anchors] == [NEVER, NEVER]


def test_empty_refusal_is_rejected():
    with pytest.raises(MuleError, match="--refusal must be a non-empty text"):
        DistillConfig(refusal="  ")


def test_cli_show_prompts_with_refusal(tiny_model_dir, tmp_path):
    data_file = write_jsonl(tmp_path / "data.jsonl", RECORDS)
    result = CliRunner().invoke(cli, ["distill", "-m", str(tiny_model_dir), "--data", str(data_file),
                                      "--target", "Harry Potter", "--show-prompts", "--demos", "1",
                                      "--method", "ours", "--refusal", NEVER])
    assert result.exit_code == 0, result.output
    assert NEVER in result.output and REFUSAL not in result.output


def test_resume_check_treats_options_a_checkpoint_predates_as_defaults():
    cfg = DistillConfig(target="Harry Potter")
    saved = {k: getattr(cfg, k) for k in DistillConfig.RESUME_KEYS if k not in ("refusal", "refusal_anchors")}
    assert config_changes(saved, cfg) == []
    assert config_changes(saved, DistillConfig(target="Harry Potter", refusal=NEVER)) == ["refusal"]
    assert config_changes({**saved, "lr": 1.0}, cfg) == ["lr"]
