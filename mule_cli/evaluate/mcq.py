"""Multiple-choice scoring by option log-likelihood (SPEC §5): the prompt is the question alone
(options are not listed) and each option is scored as the assistant's answer; the pick is the option
with the highest mean per-token log-likelihood. Used for neighbour MCQs and MMLU alike.
"""

from __future__ import annotations

import math
from typing import Sequence

from .. import lm


def score_options(model, tokenizer, prompts: Sequence[str], options: Sequence[Sequence[str]], *,
                  batch_size: int = 16, progress: bool | str = False) -> list[list[float]]:
    """Mean per-token log-likelihood of every option after its (already templated) prompt.

    All (prompt, option) pairs of all questions go through one batched call, so batches are full and
    sorted by length rather than one question's few options at a time.
    """
    flat_prompts, flat_options, owner = [], [], []
    for q, (prompt, opts) in enumerate(zip(prompts, options)):
        for opt in opts:
            flat_prompts.append(prompt)
            flat_options.append(opt)
            owner.append(q)
    flat = lm.continuation_logprobs(model, tokenizer, flat_prompts, flat_options,
                                    batch_size=batch_size, progress=progress) if flat_prompts else []
    out: list[list[float]] = [[] for _ in prompts]
    for q, value in zip(owner, flat):
        out[q].append(value)
    return out


def pick(scores: Sequence[float]) -> int:
    """Index of the best option; ties (and NaN for an option with no tokens) go to the lower index."""
    best, best_value = 0, -math.inf
    for i, value in enumerate(scores):
        if not math.isnan(value) and value > best_value:
            best, best_value = i, value
    return best
