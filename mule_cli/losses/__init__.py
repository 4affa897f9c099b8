"""Loss functions of mule: pure functions over tensors (no model code).

Baselines (``sequence`` → ``baselines``): compute per-token log-probs of the teacher-forced
response once with :func:`token_logprobs`, reduce them per sequence, then apply a loss.
Distillation: :func:`topk_smooth_l1` (ours with union=True through the fused kernel, the DUET ablation
with union=False) and :func:`bild_loss` (BiLD) take aligned student/teacher logit rows. Default hyper-parameters
live in :mod:`mule_cli.losses.defaults`.
"""

from . import defaults
from .baselines import ga_loss, nll_loss, npo_loss, simnpo_loss
from .bild import bild_loss
from .sequence import (IGNORE_INDEX, causal_shift, label_mask, mean_sequence_logprob, sequence_lengths,
                       sequence_logprob, token_logprobs)
from .topk import stable_topk_indices
from .topk_distill import topk_smooth_l1

__all__ = [
    "defaults", "IGNORE_INDEX", "causal_shift", "label_mask", "token_logprobs", "sequence_logprob",
    "sequence_lengths", "mean_sequence_logprob", "nll_loss", "ga_loss",
    "npo_loss", "simnpo_loss", "bild_loss", "topk_smooth_l1",
    "stable_topk_indices",
]
