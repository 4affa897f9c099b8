"""`--known-by`: keep only records the model actually answers (ROUGE-L recall of greedy output >= threshold).

Why: unlearning what a model never knew measures nothing, and a neighbour it never knew cannot be "kept".
Adversarial records pass through untouched (they are judged by `mule attack`).
"""

from __future__ import annotations

from ..lm import BATCH_SIZE, chat_prompt, generate
from ..rouge import rouge_l

FILTERED = ("forget", "neighbor", "retain")


def filter_known(records: list[dict], model, tokenizer, *, threshold: float = 0.5, batch_size: int = BATCH_SIZE,
                 max_new_tokens: int = 48, progress: bool = True) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """(kept records in input order, {objective: {kept, dropped}})."""
    idx = [i for i, r in enumerate(records) if r["objective"] in FILTERED]
    prompts = [chat_prompt(tokenizer, records[i]["question"]) for i in idx]
    outs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    progress="known-by" if progress else False)
    known = {i: rouge_l(records[i]["answer"], out)[0] >= threshold for i, out in zip(idx, outs)}
    stats: dict[str, dict[str, int]] = {}
    kept = []
    for i, rec in enumerate(records):
        if i not in known:
            kept.append(rec)
            continue
        s = stats.setdefault(rec["objective"], {"kept": 0, "dropped": 0})
        if known[i]:
            s["kept"] += 1
            kept.append(rec)
        else:
            s["dropped"] += 1
    return kept, stats
