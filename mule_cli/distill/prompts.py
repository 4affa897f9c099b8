"""`--show-prompts`: the exact texts each side sees, so a user can check the teacher's steering
before spending hours of training on it."""

from __future__ import annotations

from typing import Sequence

from ..intentions import build_intentions
from ..models import load_tokenizer, resolve_model
from ..records import OBJECTIVES
from .batches import response_text, student_prompt, teacher_prompt
from .config import DistillConfig
from .methods import spec_for


def render_prompts(cfg: DistillConfig, records: Sequence[dict], tokenizer=None) -> str:
    """Teacher context, student context and the shared response for one record of each objective."""
    tokenizer = tokenizer or load_tokenizer(resolve_model(cfg.model))
    spec = spec_for(cfg)
    prompts = build_intentions(cfg.target, cfg.intentions, cfg.refusal) if spec.prompted_teacher else None
    parts = []
    for obj in OBJECTIVES:
        rec = next((r for r in records if r["objective"] == obj), None)
        if rec is None:
            parts.append(f"=== {obj}: no record in the data ===\n")
            continue
        parts.append(f"=== {obj} (record {rec['id']}) ===")
        if prompts is not None:
            parts.append("--- teacher context ---")
            parts.append(teacher_prompt(tokenizer, rec, records, prompts, cfg.teacher, cfg.demos, cfg.refusal))
            if cfg.demo_answer_sources[obj] == "base":
                parts.append("(--demo-answers base: in training these demos show the base model's own greedy answer "
                             "instead of the data answer above, where it states the data answer)")
        else:
            parts.append(f"--- teacher context: none (method {cfg.method} uses no prompted teacher) ---")
        parts.append("--- student context ---")
        parts.append(student_prompt(tokenizer, rec))
        parts.append("--- response (both sides are forced on it) ---")
        source = cfg.response_sources[obj]
        if source != "data" and prompts is not None:
            who = "the teacher's own" if source == "teacher" else "the base model's plain-context"
            parts.append(f"({who} greedy answer, generated at the start of training)\n")
        else:
            parts.append(response_text(rec, spec.name, refusal=cfg.refusal) + "\n")
    return "\n".join(parts)
