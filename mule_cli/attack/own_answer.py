"""Own-answer prefills: the model's own answer to a target question, cut right before it states the fact.

Why: a model that answers in sentences reaches the fact in the middle of its own words ("The author of
Harry Potter and the Philosopher's Stone is actually J.K. Rowling."). Those words are the most natural
prefilling attack there is (the assistant's own start), and they are the positions where an unlearned
model that keeps its sentence style would still state the fact; a forget record forced on the short
answer alone never trains them.
"""

from __future__ import annotations

import re

WORD = re.compile(r"[A-Za-z0-9]+")
# Words that say nothing about the fact: an answer word among them never starts a match.
FILLER = {"a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "for", "by", "with", "is", "was", "are",
          "it", "its", "his", "her", "their", "s"}


def _words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def fact_span(generation: str, answer: str, question: str = "") -> tuple[int, int] | None:
    """(start, end) characters of `generation` where it states `answer`: from the first answer word the
    question does not already contain (echoes of the question are not the fact), widened over the
    adjacent answer words on both sides; None when the generation never says such a word."""
    answer_words = set(_words(answer))
    novel = answer_words - set(_words(question)) - FILLER
    if not novel:
        return None
    spans = list(WORD.finditer(generation))
    first = next((i for i, m in enumerate(spans) if m.group().lower() in novel), None)
    if first is None:
        return None
    lo = hi = first
    while lo > 0 and spans[lo - 1].group().lower() in answer_words:
        lo -= 1
    while hi + 1 < len(spans) and spans[hi + 1].group().lower() in answer_words:
        hi += 1
    return spans[lo].start(), spans[hi].end()


def own_answer_prefill(generation: str, answer: str, question: str = "") -> tuple[str, str] | None:
    """(prefill, fact) from the model's own answer: the words before the fact and the fact as it says it;
    None when it does not state the fact, or states it first (then it is no prefill: the plain question
    already leads to it)."""
    span = fact_span(generation, answer, question)
    if span is None or not generation[:span[0]].strip():
        return None
    return generation[:span[0]].rstrip(), generation[span[0]:span[1]]


def own_answer_record(rec: dict, generation: str, source: str) -> dict | None:
    """An `adversarial` copy of forget record `rec` prefilled with the model's own answer cut before the fact
    (prefill_family "own", anchor_of = rec's id, the data answer kept); None when the answer gives no prefill."""
    cut = own_answer_prefill(generation, rec["answer"], rec["question"])
    if cut is None:
        return None
    return {"id": f"{rec['id']}-own", "objective": "adversarial", "question": rec["question"], "answer": rec["answer"],
            "prefill": cut[0], "prefill_family": "own", "anchor_of": rec["id"], "domain": rec.get("domain"),
            "source": source}
