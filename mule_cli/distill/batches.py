"""Aligned student/teacher examples and the order they are trained in.

Student context = question (+ prefill); teacher context = intention prompt + few-shot demos +
question (+ prefill). Both are followed by the SAME response token ids (tokenised once, on their
own), so row j of the student's response logits and row j of the teacher's predict the same token.
Batches mix objectives (stratified order) and keep contrastive anchor pairs together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import MuleError
from ..intentions import REFUSAL, parse_demos, pick_demos, teacher_context
from ..lm import chat_prompt, encode_pair, pad_batch
from ..records import FORGET_LIKE, join_prefill
from .config import DISTILL_METHODS
from .refusal_anchors import is_anchor


@dataclass
class Example:
    """One record, tokenised for both sides."""

    index: int
    id: str
    objective: str
    student_ids: list[int]
    response_ids: list[int]
    teacher_ids: list[int] | None = None
    anchor: bool = False  # a refusal anchor (refusal_anchors.py): trained as retain, never as its answer

    @property
    def n(self) -> int:
        return len(self.response_ids)


def response_text(record: dict, method: str, generated: dict | None = None, refusal: str = REFUSAL) -> str:
    """What both sides are forced on: the data answer, a generated answer (`--response teacher|base`,
    by record id), or (sft) the refusal on forget-like records."""
    if method == "sft" and record["objective"] in FORGET_LIKE:
        text = refusal
    elif is_anchor(record):  # a refusal anchor is forced on its refusal whatever --response says
        text = record["answer"]
    elif generated and record["id"] in generated and method in DISTILL_METHODS:
        # an empty generation falls back to the data answer rather than training on nothing
        text = generated[record["id"]] or record["answer"]
    else:
        text = record["answer"]
    return join_prefill(record.get("prefill"), text)


def student_prompt(tokenizer, record: dict) -> str:
    return chat_prompt(tokenizer, record["question"], prefill=record.get("prefill"))


def demo_pool(records: Sequence[dict]) -> list[dict]:
    """The records a teacher context may show as demos: refusal anchors never are."""
    return [r for r in records if not is_anchor(r)]


def teacher_prompt(tokenizer, record: dict, records: Sequence[dict], prompts: dict, mode: str,
                   n_demos: int | str | dict, refusal: str = REFUSAL, demo_answers: dict | None = None) -> str:
    """n_demos: one count, or per objective (see `parse_demos`); refusal: what forget-like demos answer;
    demo_answers: {record id: answer} the answering demos show instead of the data's (`--demo-answers`)."""
    if is_anchor(record):  # the plain frozen model: the base's own likelihood of refusing
        return student_prompt(tokenizer, record)
    n = parse_demos(n_demos)[record["objective"]]
    demos = pick_demos(demo_pool(records), record["objective"], record["id"], n, refusal, demo_answers)
    context = teacher_context(prompts, record["objective"], mode=mode, demos=demos)
    return chat_prompt(tokenizer, record["question"], prefill=record.get("prefill"), context=context)


def _fit(ids: list[int], resp: list[int], max_length: int, rec_id: str, side: str) -> tuple[list[int], list[int]]:
    """Cut the response tail so the sequence fits; a prompt that alone is too long is an error."""
    prompt_len = len(ids) - len(resp)
    if prompt_len + 1 > max_length:
        raise MuleError(f"record {rec_id!r}: the {side} prompt has {prompt_len} tokens, more than "
                        f"--max-length {max_length} allows (use fewer --demos or a larger --max-length)")
    keep = min(len(resp), max_length - prompt_len)
    return ids[:prompt_len + keep], resp[:keep]


def build_examples(records: Sequence[dict], tokenizer, *, method: str, prompts: dict | None, teacher_mode: str = "oracle",
                   n_demos: int | str | dict = 0, max_length: int = 1024, generated: dict | None = None,
                   refusal: str = REFUSAL, demo_answers: dict | None = None) -> list[Example]:
    """Tokenise every record for the student and (when a prompted teacher is used) the teacher.
    demo_answers: see `teacher_prompt`."""
    examples = []
    for i, rec in enumerate(records):
        resp_text = response_text(rec, method, generated, refusal)
        if not resp_text.strip():
            raise MuleError(f"record {rec['id']!r}: field 'answer' is empty; nothing to train on")
        s_ids, resp = encode_pair(tokenizer, student_prompt(tokenizer, rec), resp_text)
        s_ids, resp_s = _fit(s_ids, resp, max_length, rec["id"], "student")
        t_ids = None
        if prompts is not None:
            t_full, resp_t = encode_pair(tokenizer, teacher_prompt(tokenizer, rec, records, prompts, teacher_mode,
                                                                   n_demos, refusal, demo_answers), resp_text)
            t_ids, resp_t = _fit(t_full, resp_t, max_length, rec["id"], "teacher")
            n = min(len(resp_s), len(resp_t))  # both sides keep the same response prefix
            s_ids = s_ids[:len(s_ids) - len(resp_s) + n]
            t_ids = t_ids[:len(t_ids) - len(resp_t) + n]
            resp_s = resp_s[:n]
        examples.append(Example(i, rec["id"], rec["objective"], s_ids, resp_s, t_ids, is_anchor(rec)))
    return examples


# ---------------------------------------------------------------- batching
@dataclass
class Side:
    """A padded batch of one side plus where its response logits sit."""

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    positions: torch.Tensor  # [B, R] index of the logit that predicts response token j (0 where invalid)
    labels: torch.Tensor  # [B, R] response token ids (-100 where invalid)
    valid: torch.Tensor  # [B, R] bool

    def to(self, device) -> "Side":
        return Side(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.positions, self.labels,
                                              self.valid)))


def collate_side(seqs: Sequence[list[int]], responses: Sequence[list[int]], pad_id: int) -> Side:
    ids, mask = pad_batch(seqs, pad_id)
    width = max(1, max(len(r) for r in responses))
    positions = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for row, (seq, resp) in enumerate(zip(seqs, responses)):
        n = len(resp)
        start = len(seq) - n - 1  # logits at position p predict token p+1
        positions[row, :n] = torch.arange(start, start + n)
        labels[row, :n] = torch.tensor(resp, dtype=torch.long)
    return Side(ids, mask, positions, labels, labels != -100)


@dataclass
class Batch:
    examples: list[Example]
    student: Side
    teacher: Side | None

    @property
    def objectives(self) -> list[str]:
        return [e.objective for e in self.examples]

    def tokens(self) -> int:
        n = int(self.student.attention_mask.sum())
        return n + (int(self.teacher.attention_mask.sum()) if self.teacher is not None else 0)


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    student = collate_side([e.student_ids for e in examples], [e.response_ids for e in examples], pad_id)
    teacher = None
    if all(e.teacher_ids is not None for e in examples):
        teacher = collate_side([e.teacher_ids for e in examples], [e.response_ids for e in examples], pad_id)
    return Batch(list(examples), student, teacher)


# ---------------------------------------------------------------- order
def anchor_units(records: Sequence[dict]) -> list[list[int]]:
    """Groups of record indices linked by `anchor_of` (union-find), so an anchor pair shares a batch."""
    parent = list(range(len(records)))
    index = {r["id"]: i for i, r in enumerate(records)}

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, rec in enumerate(records):
        other = rec.get("anchor_of")
        if other in index:
            parent[find(i)] = find(index[other])
    groups: dict[int, list[int]] = {}
    for i in range(len(records)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def epoch_batches(units: Sequence[list[int]], objectives: Sequence[str], batch_size: int, seed: int,
                  epoch: int) -> list[list[int]]:
    """One epoch's micro-batches: units shuffled within each objective, then spread evenly so every
    batch mixes objectives in proportion; packed greedily without splitting a unit that fits."""
    rng = random.Random(f"{seed}:{epoch}")
    buckets: dict[str, list[list[int]]] = {}
    for unit in units:
        buckets.setdefault(objectives[unit[0]], []).append(unit)
    keyed = []
    for obj in sorted(buckets):
        bucket = buckets[obj]
        rng.shuffle(bucket)
        offset = rng.random()
        keyed += [((i + offset) / len(bucket), obj, unit) for i, unit in enumerate(bucket)]
    keyed.sort(key=lambda item: (item[0], item[1]))
    batches, current = [], []
    for _, _, unit in keyed:
        if current and len(current) + len(unit) > batch_size:
            batches.append(current)
            current = []
        for start in range(0, len(unit), batch_size):
            chunk = unit[start:start + batch_size]
            if current and len(current) + len(chunk) > batch_size:
                batches.append(current)
                current = []
            current = current + chunk
    if current:
        batches.append(current)
    return batches


def training_plan(units: Sequence[list[int]], objectives: Sequence[str], *, batch_size: int, grad_accum: int,
                  seed: int, epochs: int, max_steps: int | None) -> list[list[list[int]]]:
    """Every optimizer step as a list of micro-batches of example indices. Deterministic from the seed,
    so a resumed run only needs the step number to know where it is."""
    steps, epoch = [], 0
    while True:
        batches = epoch_batches(units, objectives, batch_size, seed, epoch)
        for i in range(0, len(batches), grad_accum):
            steps.append(batches[i:i + grad_accum])
            if max_steps is not None and len(steps) >= max_steps:
                return steps
        epoch += 1
        if max_steps is None and epoch >= epochs:
            return steps


def split_for_rank(batch: list[int], rank: int, world: int) -> list[int]:
    """This rank's share of a global micro-batch (strided, so shares differ by at most one)."""
    return batch[rank::world]
