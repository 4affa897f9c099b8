"""Loss functions of mule: pure functions over tensors (no model code).

Baselines (``sequence`` → ``baselines``): compute per-token log-probs of the teacher-forced
response once with :func:`token_logprobs`, reduce them per sequence, then apply a loss.
Distillation ablations: :func:`bild_loss` (BiLD) and :func:`teacher_topk_smooth_l1`
(uni-directional DUET) take aligned student/teacher logit rows. Default hyper-parameters
live in :mod:`mule_cli.losses.defaults`.
"""

from . import defaults
from .baselines import forget_retain_loss, ga_loss, graddiff_loss, nll_loss, npo_loss, simnpo_loss
from .bild import bild_loss
from .duet import teacher_topk_smooth_l1
from .sequence import (IGNORE_INDEX, causal_shift, label_mask, mean_sequence_logprob, sequence_lengths,
                       sequence_logprob, token_logprobs)
from .topk import stable_topk_indices

__all__ = [
    "defaults", "IGNORE_INDEX", "causal_shift", "label_mask", "token_logprobs", "sequence_logprob",
    "sequence_lengths", "mean_sequence_logprob", "nll_loss", "ga_loss", "graddiff_loss",
    "forget_retain_loss", "npo_loss", "simnpo_loss", "bild_loss", "teacher_topk_smooth_l1",
    "stable_topk_indices",
]
