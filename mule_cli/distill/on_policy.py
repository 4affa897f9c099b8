"""`--response OBJ=student`: train those records on the student's OWN greedy answers, regenerated every
`--student-refresh` steps, and scored by the teacher as usual (for plain retain: the frozen base).

Why: on the HP example the unlearned student answers general questions in another style than the base
(terse, the entity first), and the wrong entity appears on that path. Data answers and the base's answers
never put the student there, so nothing in training corrects it; the student's own answers do (on-policy
distillation). Measured in docs/RESULTS.md, seventh round.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..lm import generate
from . import distributed as D
from .batches import student_prompt
from .responses import MAX_NEW_TOKENS

SOURCE = "student"


def student_answers(lm, tokenizer, records: Sequence[dict], dist: D.Dist, progress: bool = False) -> dict[str, str]:
    """{record id: the student's current greedy answer}; rank 0 generates, every rank gets the same text."""
    texts = None
    if dist.main:
        was_training = lm.training
        lm.eval()
        try:
            with torch.no_grad():
                texts = generate(lm, tokenizer, [student_prompt(tokenizer, r) for r in records],
                                 max_new_tokens=MAX_NEW_TOKENS, progress="student answers" if progress else False)
        finally:
            lm.train(was_training)
    texts = D.broadcast_object(dist, texts)
    return {r["id"]: t for r, t in zip(records, texts)}
