"""ROUGE-L of a reference answer inside a generation (SPEC §5): recall is the headline, F1 beside it."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(reference: str, generation: str) -> tuple[float, float]:
    """(recall, f1) in [0, 1] of ROUGE-L with stemming; recall = share of the reference recovered."""
    score = _scorer().score(reference, generation)["rougeL"]
    return score.recall, score.fmeasure
