"""Small text helpers shared by the standardize steps: tokens, stopwords, sentence splitting.

Plain Python on purpose: the steps must be deterministic and need no extra dependency.
"""

from __future__ import annotations

import re

STOPWORDS = frozenset("""
a an the and or but if then else of to in on at by for with from into onto over under about as is are was were be
been being am do does did done have has had having it its it's this that these those there here he she him her his
hers they them their theirs we us our you your i me my mine who whom whose which what when where why how not no nor
so than too very can could should would will shall may might must also just only both each few more most other some
such own same all any up down out off again further once s t d ll m o re ve y one
""".split())

WORD_RE = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")


def words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def stem(word: str) -> str:
    """A crude suffix stripper: enough for lexical overlap between an answer and its passage."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    for suf in ("ies", "es", "s"):
        if len(w) > 4 and w.endswith(suf) and not w.endswith("ss"):
            return w[: -len(suf)] + ("y" if suf == "ies" else "")
    return w


def content_tokens(text: str) -> list[str]:
    """Lower-cased, stemmed words without stopwords (the units of overlap and TF-IDF)."""
    return [stem(w) for w in words(text) if w.lower() not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def normalize_question(text: str) -> str:
    """Key for 'the same question': case, punctuation and spacing do not matter."""
    return " ".join(w.lower() for w in words(text))


def overlap(answer: str, passage: str) -> float:
    """Share of the answer's content tokens that occur in the passage (1.0 for an empty answer set)."""
    toks = content_tokens(answer) or [w.lower() for w in words(answer)]
    if not toks:
        return 0.0
    have = set(content_tokens(passage)) | {w.lower() for w in words(passage)}
    return sum(t in have for t in toks) / len(toks)


# Abbreviations after which a period does not end a sentence.
_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "mt", "no", "vol", "fig"}
_SENT_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s+|$)")


def split_sentences(text: str) -> list[tuple[int, str]]:
    """Sentences of `text` as (start offset, sentence); keeps initials like 'J. K.' together."""
    out, start = [], 0
    for m in _SENT_END.finditer(text):
        end = m.end()
        before = text[start:m.start() + 1]
        last = re.search(r"([A-Za-z.]+)\.$", before)
        if last and m.group(0).startswith("."):
            token = last.group(1).lower()
            if token in _ABBREV or len(token) == 1:  # an abbreviation or an initial: keep going
                continue
        nxt = text[end:].lstrip()
        if nxt and not (nxt[0].isupper() or nxt[0].isdigit() or nxt[0] in "\"'“‘("):
            continue
        sent = text[start:end].strip()
        if sent:
            out.append((start + (len(text[start:end]) - len(text[start:end].lstrip())), sent))
        start = end
    tail = text[start:].strip()
    if tail:
        out.append((start + (len(text[start:]) - len(text[start:].lstrip())), tail))
    return out
