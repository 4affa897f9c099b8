"""Deterministic cloze extractor: passage sentences -> fill-in-the-blank QA, no model needed.

Why: `--generator none` must give usable forget/retain data offline and reproducibly. In each
sentence the most specific span is blanked: a multi-word name, else a single capitalised name
that is not just the sentence's first word, else a number, else the longest rare content word;
spans that recur in the passage rank lower (blanking "Harry" in every sentence teaches nothing).
"""

from __future__ import annotations

import re
from collections import Counter

from .text import STOPWORDS, split_sentences

BLANK = "____"
MIN_WORDS, MAX_WORDS = 5, 60
_NAME_WORD = r"(?:[A-Z]\.|[A-Z][\w'’\-]*)"
_NAME_RE = re.compile(rf"{_NAME_WORD}(?:\s+(?:of|the|de|von|van|and)?\s*{_NAME_WORD})*")
_NUM_RE = re.compile(r"\b\d[\d,.]*(?:\s*(?:%|percent|years?|km|kilometres|miles|metres|meters|BC|AD|CE))?\b")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z\-]+")
_LEADING_FILLERS = {"The", "A", "An", "In", "On", "At", "He", "She", "It", "They", "We", "I", "His", "Her", "Their",
                    "This", "That", "These", "Those", "When", "After", "Before", "During", "While", "As", "Although",
                    "However", "Because", "If", "But", "And", "Then", "There", "Its", "Our", "One", "Some", "Many"}


def _candidates(sentence: str) -> list[tuple[int, int, str, int]]:
    """(start, end, text, kind) spans; kind 0 = multi-word name, 1 = name, 2 = number, 3 = content word."""
    spans = []
    for m in _NAME_RE.finditer(sentence):
        text, start = m.group(0).rstrip(" -"), m.start()
        parts = text.split()
        while parts and parts[0] in _LEADING_FILLERS:  # "The Burrow" keeps The only when inside
            start += len(parts[0]) + 1
            parts = parts[1:]
        if not parts:
            continue
        text = " ".join(parts)
        if text.rstrip(".") in _LEADING_FILLERS or text.lower() in STOPWORDS:
            continue
        if len(parts) == 1 and start == 0:
            continue  # capitalised only because it starts the sentence
        spans.append((start, start + len(text), text, 0 if len(parts) > 1 else 1))
    for m in _NUM_RE.finditer(sentence):
        spans.append((m.start(), m.end(), m.group(0), 2))
    for m in _WORD_RE.finditer(sentence):
        w = m.group(0)
        if len(w) >= 6 and w.lower() not in STOPWORDS and not w[0].isupper():
            spans.append((m.start(), m.end(), w, 3))
    return spans


def cloze_question(sentence: str, span: tuple[int, int]) -> str:
    start, end = span
    body = sentence[:start] + BLANK + sentence[end:]
    return f"Fill in the blank: {body.strip()}"


def extract_cloze(passage: str, max_questions: int | None = None) -> list[tuple[str, str, int]]:
    """(question, answer, sentence offset) triples, in passage order, one per usable sentence."""
    sentences = split_sentences(passage)
    lowered = passage.lower()
    freq = Counter()
    for _, sent in sentences:
        for _, _, text, _ in _candidates(sent):
            freq[text] = lowered.count(text.lower())
    out = []
    for offset, sent in sentences:
        n_words = len(sent.split())
        if not MIN_WORDS <= n_words <= MAX_WORDS:
            continue
        cands = _candidates(sent)
        if not cands:
            continue
        # most specific first: kind, then rarity in the passage, then length, then position
        best = min(cands, key=lambda c: (c[3], freq[c[2]], -len(c[2]), c[0]))
        answer = best[2].strip().rstrip(",;:")
        if len(answer) < 2:
            continue
        out.append((cloze_question(sent, (best[0], best[0] + len(answer))), answer, offset))
        if max_questions and len(out) >= max_questions:
            break
    return out
