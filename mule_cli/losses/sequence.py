"""Per-token and per-sequence log-likelihoods of teacher-forced responses.

Label convention (the caller shifts): ``labels[b, i]`` is the token that
``logits[b, i]`` predicts, i.e. for a causal LM ``logits = out.logits[:, :-1]`` and
``labels = input_ids[:, 1:]`` — :func:`causal_shift` does exactly this. Positions that
are not part of the response (prompt, padding) carry ``ignore_index`` (-100, the HF
convention) or are zero in the caller's mask; their log-prob is returned as 0 so that
a plain sum over a row is already the masked sum.

Everything is computed in float32 whatever the logits' dtype: bf16/fp16 log-softmax
over a 50k vocabulary loses several digits, and these values feed NPO ratios and
gradients where that matters. (float64 inputs stay float64.)
"""

from __future__ import annotations

import torch

from ._acc import to_acc

IGNORE_INDEX = -100


def causal_shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align a causal LM's ``logits [B,L,V]`` with unshifted ``labels [B,L]``: drop the last
    logit and the first label, so position i of the result predicts label i."""
    return logits[:, :-1], labels[:, 1:]


def label_mask(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Bool mask of the positions that count (labels not equal to ``ignore_index``)."""
    return labels != ignore_index


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor,
                   ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """log p(labels[b,i] | logits[b,i]) as float32 ``[B,L]``; 0 where the label is ``ignore_index``.

    ``labels`` must already be shifted (see the module docstring). Uses
    gather − logsumexp rather than a full log-softmax to avoid a second [B,L,V] buffer.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not align")
    valid = labels != ignore_index
    safe = torch.where(valid, labels, torch.zeros_like(labels)).long()
    lf = to_acc(logits)
    picked = lf.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    lp = picked - torch.logsumexp(lf, dim=-1)
    return torch.where(valid, lp, torch.zeros_like(lp))


def sequence_logprob(token_lp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log π(y|x) of each row: the sum of the masked token log-probs, float32 ``[B]``."""
    return (to_acc(token_lp) * mask.to(torch.float32)).sum(-1)


def sequence_lengths(mask: torch.Tensor) -> torch.Tensor:
    """|y| of each row (number of valid tokens), float32 ``[B]``, at least 1 so it can divide."""
    return mask.to(torch.float32).sum(-1).clamp_min(1.0)


def mean_sequence_logprob(token_lp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Length-normalised log π(y|x)/|y| of each row, float32 ``[B]`` (0 for an empty row)."""
    return sequence_logprob(token_lp, mask) / sequence_lengths(mask)
