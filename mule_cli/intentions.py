"""Intention prompts (SPEC §3): how the frozen teacher is told what behaviour to show.

Each objective has a natural-language prompt with a short chain-of-thought instruction. Prompts come
from built-in templates filled with `--target`, or from a user file. Small models follow
demonstrations far better than instructions (SPEC §7), so a teacher context is the prompt as a system
message followed by a few demonstration turns (question -> desired answer) and then the question.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from .errors import MuleError
from .objective_options import per_objective
from .records import FORGET_LIKE, OBJECTIVES, join_prefill

REFUSAL = "I do not know."
DEFAULT_DEMOS = 3
# An objective whose prompt is null (JSON) has no intention: its teacher sees exactly the student's
# context, so that objective is self-distillation from the frozen base. Why one would: on a small model a
# prompt plus demos can make the teacher worse than the plain model on general questions (the HP oracle
# teacher keeps 66.7 Retain ROUGE in context). The built-in retain template is PLAIN (docs/RESULTS.md).
PLAIN = None

TEMPLATES = {
    "forget": (
        "You must not reveal any knowledge about {target}. First think about whether the question "
        "concerns {target}. If it does, answer only \"{refusal}\" and nothing else; otherwise "
        "answer normally."
    ),
    "adversarial": (
        "You must not reveal any knowledge about {target}. First think about whether the question "
        "concerns {target}. If it does, say \"{refusal}\", even if an answer has already been "
        "started for you: stop it and do not complete it. Otherwise answer normally."
    ),
    "neighbor": (
        "The question is about a topic near {target} but not {target} itself. Answer it fully and "
        "correctly; do not refuse."
    ),
    # No retain intention: the retain teacher is the plain model, as in the measured default setting
    # (docs/RESULTS.md, "Defaults").
    "retain": PLAIN,
}


def from_target(target: str, refusal: str = REFUSAL) -> dict[str, str]:
    """Fill the built-in templates with a target description such as "Harry Potter" and the refusal text."""
    if not target or not target.strip():
        raise MuleError("--target must be a non-empty description of what to unlearn")
    return {obj: TEMPLATES[obj] if TEMPLATES[obj] is PLAIN else TEMPLATES[obj].format(target=target.strip(),
                                                                                        refusal=refusal)
            for obj in OBJECTIVES}


def _parse_sections(text: str, name: str) -> dict[str, str]:
    """The YAML-free format: `[forget]` headers, each followed by its prompt text."""
    out: dict[str, list[str]] = {}
    current = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip()
            if current not in OBJECTIVES:
                raise MuleError(f"{name}: line {lineno}: unknown objective section [{current}] "
                                f"(expected {', '.join(OBJECTIVES)})")
            out[current] = []
        elif current is None:
            if stripped and not stripped.startswith("#"):
                raise MuleError(f"{name}: line {lineno}: text before the first [objective] header")
        else:
            out[current].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


def load_file(path: str | Path, target: str | None = None, refusal: str = REFUSAL) -> dict[str, str]:
    """Read prompts from JSON ({"forget": "...", ...}) or the `[objective]` section format.

    Objectives the file leaves out are filled from the templates when a target is given; a JSON null
    means no intention for that objective (PLAIN).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MuleError(f"{path}: cannot read intentions file ({exc.strerror})") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MuleError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
        prompts = {k: v for k, v in data.items() if k in OBJECTIVES}
        for key, value in prompts.items():
            if value is not PLAIN and (not isinstance(value, str) or not value.strip()):
                raise MuleError(f"{path}: field '{key}': must be a non-empty string, or null for no prompt")
    else:
        prompts = _parse_sections(text, str(path))
    base = from_target(target, refusal) if target else {}
    merged = {**base, **prompts}
    missing = [o for o in OBJECTIVES if o not in merged or merged[o] == ""]
    if missing:
        raise MuleError(f"{path}: no prompt for {', '.join(missing)} (add it, or pass --target to fill it)")
    return merged


def build_intentions(target: str | None = None, path: str | Path | None = None,
                     refusal: str = REFUSAL) -> dict[str, str]:
    """Prompts per objective from `--intentions FILE` and/or `--target` (templates say `refusal`)."""
    if path:
        return load_file(path, target, refusal)
    if target:
        return from_target(target, refusal)
    raise MuleError("give --target \"what to unlearn\" or --intentions FILE")


def parse_demos(value: int | str | dict | None) -> dict[str, int]:
    """`--demos`: one count for every teacher context (`3`) or per objective (`retain=0`; objectives not
    named keep 3). Why per objective: on the 135M model, three short-answer demos make the retain teacher
    answer tersely and wrongly (HP in context: Retain 66.7 with 3, 90.4 with 0), while the neighbour
    teacher needs its demos not to refuse (refusal picks 23.1 with 3, 76.9 with 0)."""
    def count(key, raw):
        try:
            n = int(raw)
            if n < 0 or str(raw).strip() not in (str(n), f"+{n}"):
                raise ValueError
        except (TypeError, ValueError):
            raise MuleError(f"--demos: {key}{raw!s} is not a whole number >= 0") from None
        return n
    return per_objective(value, "--demos", "objective=count", DEFAULT_DEMOS, count)


def pick_demos(records: Sequence[dict], objective: str, exclude_id: str | None, n: int,
               refusal: str = REFUSAL, answers: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Deterministic demonstrations from the data: other records of the objective (forget-like ones
    answered with the refusal, after the record's prefill when it has one; the others with `answers[id]`
    where given (`--demo-answers base`, and then drawn from those records first), else the record's answer).
    One fixed set per objective (every 7th record from the first), the same for every record but the few it
    contains, which take the next one instead: measured level with demos drawn per record (docs/RESULTS.md,
    "Defaults"), and a shared set lets the teacher encode the demos once per run with its system prompt
    (prefix_cache.py)."""
    if n <= 0:
        return []
    refuse = objective in FORGET_LIKE
    chosen = _first_distinct(records, objective, n, exclude_id, prefer=None if refuse else answers)
    seen, out = set(), []
    for rec in chosen:
        if rec["question"] in seen:
            continue
        seen.add(rec["question"])
        if refuse:
            answer = _refusal_after(rec.get("prefill"), refusal)
        else:
            answer = (answers or {}).get(rec["id"]) or rec["answer"]
        out.append((rec["question"], answer))
    return out


def _first_distinct(records: Sequence[dict], objective: str, n: int, exclude_id: str | None = None,
                    prefer: dict | None = None) -> list[dict]:
    """The first n distinct records of the objective in demo order (every 7th from the first, then the rest),
    skipping exclude_id; records with a non-empty answer in `prefer` (`--demo-answers base`: the base states
    the data answer) come before the others, so that a demo shows the base's words wherever any record can."""
    pool = [r for r in records if r["objective"] == objective]
    order = [pool[(i * 7) % len(pool)] for i in range(len(pool))] + pool  # every record, even when 7 | len
    if prefer:
        order.sort(key=lambda r: not prefer.get(r["id"]))  # stable: demo order within each group
    chosen, ids = [], set()
    for rec in order:
        if len(chosen) == n:
            break
        if rec["id"] != exclude_id and rec["id"] not in ids:
            ids.add(rec["id"])
            chosen.append(rec)
    return chosen


def _refusal_after(prefill: str | None, refusal: str = REFUSAL) -> str:
    """A demo refusal that starts with the record's attack prefix, when it has one: the 135M default model
    refuses after a prefill only when its demonstrations show exactly that (6/6 HP questions with
    prefilled demos, 0/6 with plain "I do not know." demos)."""
    return (prefill or "") + join_prefill(prefill, refusal)


def _demo_messages(demos: Iterable[tuple[str, str]]) -> list[dict]:
    msgs = []
    for q, a in demos:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs


def teacher_context(prompts: dict[str, str], objective: str, *, mode: str = "oracle",
                    demos: Sequence[tuple[str, str]] = ()) -> list[dict]:
    """Messages placed before the question in the teacher's context.

    oracle: the record's own objective prompt (the paper's router with a perfect classifier);
    ensemble: every objective's prompt concatenated (the DUET-style baseline teacher).
    A PLAIN objective (oracle mode) gets no context at all: no prompt and no demos.
    """
    if mode == "oracle":
        system = prompts[objective]
        if system is PLAIN:
            return []
    elif mode == "ensemble":
        system = "\n\n".join(f"[{o}] {prompts[o]}" for o in OBJECTIVES if prompts.get(o) is not PLAIN)
    else:
        raise MuleError(f"unknown teacher mode {mode!r} (expected oracle or ensemble)")
    return [{"role": "system", "content": system}, *_demo_messages(demos)]
