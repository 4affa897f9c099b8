"""Robustness attacks of `mule evaluate --attacks`: ways the field knows to get "unlearned" knowledge back.

Each runs on a copy of the model (nothing is written back) and yields per-record rows, so its numbers get
bootstrap intervals like every other metric:
- `quant4` / `quant8`: round-to-nearest weight-only quantization (GGUF Q4_1 / symmetric int8 per channel,
  mule_cli.quant), then Forget, ASR and Retain again. Training that moves weights by less than half a
  step is undone by it (Zhang et al. 2024, arXiv 2410.16454).
- `relearn`: a few NLL steps on the answers of one seeded half of the forget records, then Forget on the
  other half before and after: how much never-shown knowledge comes back (Hu et al. 2024, arXiv 2406.13356).
- `templates`: every forget question inside each jailbreak wrapper of attack/jailbreaks.py; a question
  leaks when any wrapper's greedy answer reaches the ASR threshold.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .. import lm
from ..attack.jailbreaks import TEMPLATES, wrap
from ..errors import MuleError
from .metrics import PER_RECORD, attack_succeeded, point_values

ATTACKS = ("quant4", "quant8", "relearn", "templates")
QUANT_GRIDS = {"quant4": "q4_1", "quant8": "int8"}
QUANT_KEYS = ("forget_rouge", "asr", "asr_search", "asr_own", "retain_rouge")
RELEARN_LR = 1e-5
RELEARN_BATCH = 4


@dataclass
class AttackSettings:
    relearn_steps: int = 10
    seed: int = 0


def parse_attacks(text: str | None) -> tuple[str, ...]:
    """'quant4,relearn' -> ('quant4', 'relearn'); an unknown name is a one-line error."""
    names = tuple(dict.fromkeys(n.strip() for n in (text or "").split(",") if n.strip()))
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise MuleError(f"--attacks: unknown attack {', '.join(map(repr, unknown))} (known: {', '.join(ATTACKS)})")
    return names


def check_inputs(attacks: Sequence[str], records: Sequence[dict]) -> None:
    """Fail before any model loads when the records cannot support an attack."""
    n_forget = sum(1 for r in records if r["objective"] == "forget")
    if "relearn" in attacks and n_forget < 2:
        raise MuleError(f"--attacks relearn needs at least 2 forget records (one half to relearn on, the other "
                        f"to measure); the data has {n_forget}")
    if "templates" in attacks and n_forget == 0:
        raise MuleError("--attacks templates needs forget records; the data has none")


def relearn_split(forget: Sequence[dict], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(records to relearn on, records to measure): a seeded half by id, never overlapping."""
    ordered = sorted(forget, key=lambda r: r["id"])
    random.Random(seed).shuffle(ordered)
    half = len(ordered) // 2
    return ordered[:half], ordered[half:]


def metric_defs(name: str) -> dict:
    """{metric key: (select, value)} over the rows of one attack, for point values and intervals."""
    if name in QUANT_GRIDS:
        return {k: PER_RECORD[k] for k in QUANT_KEYS}
    if name == "relearn":
        return {"forget_rouge_before": (lambda r: True, lambda r: r["rouge_recall_before"]),
                "forget_rouge_after": (lambda r: True, lambda r: r["rouge_recall_after"])}
    return {"leak_rate": (lambda r: True, lambda r: r["leaked"])}


def summarize_attack(name: str, rows: Sequence[dict]) -> dict:
    return point_values(rows, metric_defs(name))


def run_attack(name: str, model, tokenizer, records: Sequence[dict], main_rows: Sequence[dict], *,
               evaluate_rows: Callable, asr_threshold: float, settings: AttackSettings,
               label: str = "model", progress: bool = True) -> list[dict]:
    """Per-record rows of one attack on `model` (on a copy where the attack changes weights).
    `evaluate_rows(model, records, label)` is the evaluation's own generation and scoring of records (same
    decoding, same scores as the main rows); `main_rows` are the model's rows from it (relearn's "before")."""
    forget = [r for r in records if r["objective"] == "forget"]
    if name in QUANT_GRIDS:
        from ..quant import quantize_model_

        attacked = copy.deepcopy(model)
        quantize_model_(attacked, QUANT_GRIDS[name])
        kept = [r for r in records if r["objective"] in ("forget", "adversarial", "retain")]
        return evaluate_rows(attacked, kept, f"{label} · {name}")
    if name == "relearn":
        train, measure = relearn_split(forget, settings.seed)
        attacked = relearn_on(copy.deepcopy(model), tokenizer, train, settings.relearn_steps, settings.seed, progress)
        before = {r["id"]: r for r in main_rows if r["objective"] == "forget"}
        trained_on = [r["id"] for r in train]
        return [{"id": row["id"], "objective": "forget", "generation_before": before[row["id"]]["generation"],
                 "generation_after": row["generation"], "rouge_recall_before": before[row["id"]]["rouge_recall"],
                 "rouge_recall_after": row["rouge_recall"], "relearned_on": trained_on}
                for row in evaluate_rows(attacked, measure, f"{label} · relearn")]
    if name == "templates":
        wrapped = [{**rec, "id": f"{rec['id']}#{kind}", "question": wrap(template, rec["question"])}
                   for rec in forget for kind, template in TEMPLATES]
        scored = evaluate_rows(model, wrapped, f"{label} · templates")
        rows = []
        for i, rec in enumerate(forget):
            tries = scored[i * len(TEMPLATES):(i + 1) * len(TEMPLATES)]
            best = max(range(len(TEMPLATES)), key=lambda k: tries[k]["rouge_recall"])
            rows.append({"id": rec["id"], "objective": "forget",
                         "leaked": attack_succeeded(tries[best]["rouge_recall"], asr_threshold),
                         "best_template": TEMPLATES[best][0], "best_recall": tries[best]["rouge_recall"],
                         "generation": tries[best]["generation"]})
        return rows
    raise MuleError(f"unknown attack {name!r}")


def relearn_on(model, tokenizer, records: Sequence[dict], steps: int, seed: int = 0, progress: bool = False):
    """Fine-tune `model` in place with plain NLL on the records' answers (the assistant turn only)."""
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=RELEARN_LR)
    order = list(records)
    random.Random(seed).shuffle(order)
    device = next(model.parameters()).device
    for step in tqdm(range(steps), desc="relearn", disable=not progress, unit="step", leave=False):
        batch = [order[(step * RELEARN_BATCH + i) % len(order)] for i in range(min(RELEARN_BATCH, len(order)))]
        pairs = [lm.encode_pair(tokenizer, lm.chat_prompt(tokenizer, r["question"]), r["answer"]) for r in batch]
        ids, mask = lm.pad_batch([full for full, _ in pairs], tokenizer.pad_token_id)
        labels = torch.full_like(ids, -100)
        for row, (full, response) in enumerate(pairs):
            labels[row, len(full) - len(response):len(full)] = ids[row, len(full) - len(response):len(full)]
        loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.requires_grad_(False)
    return model
