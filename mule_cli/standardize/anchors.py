"""Contrastive anchors (paper §3.3): each forget record points at its most similar retain/neighbour
record, so `distill` can put the pair in one batch and the model learns where the boundary is.

Similarity = TF-IDF cosine over stemmed content words of question + answer plus (at half weight)
their character trigrams, so records that share no whole word still rank by spelling overlap
("Gryffindor" ~ "griffin"). Plain Python with an inverted index (no sklearn): cheap for tens of
thousands of records and exactly reproducible.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from .text import content_tokens

ANCHOR_POOL = ("retain", "neighbor")


TRIGRAM_WEIGHT = 0.5


def features(text: str) -> Counter:
    """Word features plus '#'-prefixed character trigrams of each word (padded with spaces)."""
    toks = content_tokens(text)
    feats = Counter(toks)
    for t in toks:
        padded = f" {t} "
        for i in range(len(padded) - 2):
            feats["#" + padded[i:i + 3]] += 1
    return feats


def tfidf_vectors(texts: list[str]) -> list[dict[str, float]]:
    """L2-normalised sparse TF-IDF vectors with smoothed idf = ln((1+N)/(1+df)) + 1; trigrams at half weight."""
    docs = [features(t) for t in texts]
    df = Counter(tok for d in docs for tok in d)
    n = len(docs)
    vecs = []
    for d in docs:
        v = {tok: (1 + math.log(c)) * (math.log((1 + n) / (1 + df[tok])) + 1)
             * (TRIGRAM_WEIGHT if tok.startswith("#") else 1.0) for tok, c in d.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        vecs.append({tok: x / norm for tok, x in v.items()})
    return vecs


def nearest(queries: list[dict[str, float]], pool: list[dict[str, float]]) -> list[tuple[int, float]]:
    """For each query vector: (index into pool, cosine) of the best match; (-1, 0.0) when nothing overlaps."""
    postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for j, v in enumerate(pool):
        for tok, x in v.items():
            postings[tok].append((j, x))
    out = []
    for q in queries:
        scores: dict[int, float] = defaultdict(float)
        for tok, x in q.items():
            for j, y in postings.get(tok, ()):
                scores[j] += x * y
        if not scores:
            out.append((-1, 0.0))
            continue
        j = min(scores, key=lambda k: (-round(scores[k], 12), k))  # ties -> earlier record
        out.append((j, scores[j]))
    return out


def _text(rec: dict) -> str:
    return f"{rec['question']} {rec['answer']}"


def add_anchors(records: list[dict], *, overwrite: bool = False) -> tuple[list[dict], dict]:
    """Set `anchor_of` on forget records; returns (new records, stats). Existing valid anchors are kept
    unless `overwrite`; anchors to ids that are not in `records` are recomputed."""
    ids = {r["id"] for r in records}
    pool_idx = [i for i, r in enumerate(records) if r["objective"] in ANCHOR_POOL]
    forget_idx = [i for i, r in enumerate(records) if r["objective"] == "forget"
                  and (overwrite or r.get("anchor_of") not in ids)]
    out = [dict(r) for r in records]
    stats = {"anchored": 0, "no_match": 0, "kept": sum(1 for r in records if r["objective"] == "forget") - len(forget_idx)}
    if not forget_idx:
        return out, stats
    if not pool_idx:
        for i in forget_idx:
            out[i].pop("anchor_of", None)
        stats["no_match"] = len(forget_idx)
        return out, stats
    vecs = tfidf_vectors([_text(records[i]) for i in forget_idx + pool_idx])
    matches = nearest(vecs[: len(forget_idx)], vecs[len(forget_idx):])
    for i, (j, _score) in zip(forget_idx, matches):
        if j < 0:
            out[i].pop("anchor_of", None)
            stats["no_match"] += 1
        else:
            out[i]["anchor_of"] = records[pool_idx[j]]["id"]
            stats["anchored"] += 1
    return out, stats
