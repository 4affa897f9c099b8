"""Baseline unlearning losses (SFT, GA, GradDiff, NPO, SimNPO) over precomputed log-probs.

All functions take float tensors produced by :mod:`mule_cli.losses.sequence` and return a
scalar float32 loss to *minimise*. Reductions: token-level losses average over all valid
tokens of the batch (the HF/PyTorch cross-entropy convention); sequence-level losses
(NPO, SimNPO) average over sequences. Every sigmoid term uses ``F.logsigmoid`` so that
large |β·x| neither overflows nor returns -inf.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._acc import to_acc
from .defaults import NPO_BETA, SIMNPO_BETA, SIMNPO_GAMMA


def nll_loss(token_lp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over the valid tokens of the batch.

    The SFT loss (refusal text on forget/adversarial, reference answer on retain/neighbour)
    and the retain term of GradDiff / NPO+RT / SimNPO+RT. Returns 0 when no token is valid.
    """
    m = mask.to(torch.float32)
    # clamp: with no valid token the numerator is 0, so the loss is 0 (and no host sync)
    return -(to_acc(token_lp) * m).sum() / m.sum().clamp_min(1.0)


def ga_loss(token_lp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gradient ascent (Jang et al., 2023): −NLL of the forget tokens.

    Minimising it *raises* the forget NLL without bound — the known collapse mode that NPO
    was designed to tame; callers should stop early or pair it with a retain term.
    """
    return -nll_loss(token_lp, mask)


def npo_loss(logp_seq: torch.Tensor, ref_logp_seq: torch.Tensor, beta: float = NPO_BETA) -> torch.Tensor:
    """Negative Preference Optimization (Zhang et al., 2024), averaged over sequences:

        L = mean_i  −(2/β) · log σ(−β · (log πθ(y_i|x_i) − log πref(y_i|x_i)))
          = mean_i   (2/β) · log(1 + (πθ/πref)^β)

    ``logp_seq``/``ref_logp_seq`` are summed sequence log-probs ``[B]`` (see
    :func:`~mule_cli.losses.sequence.sequence_logprob`); the reference is the frozen model
    before unlearning and gets no gradient. At πθ = πref the loss is (2/β)·log 2; it
    decreases monotonically as πθ(y|x) falls, bounded below by 0 (unlike GA). As β → 0 its
    gradient tends to that of GA.
    """
    if beta <= 0:
        raise ValueError(f"npo beta must be > 0, got {beta}")
    log_ratio = to_acc(logp_seq) - to_acc(ref_logp_seq.detach())
    return (-(2.0 / beta) * F.logsigmoid(-beta * log_ratio)).mean()


def simnpo_loss(logp_seq: torch.Tensor, lengths: torch.Tensor, beta: float = SIMNPO_BETA,
                gamma: float = SIMNPO_GAMMA) -> torch.Tensor:
    """SimNPO (Fan et al., 2024, "Simplicity Prevails"), averaged over sequences:

        L = mean_i  −(2/β) · log σ(−(β/|y_i|) · log πθ(y_i|x_i) − γ)

    Reference-free NPO with a length-normalised reward (SimPO style). ``logp_seq`` is the
    summed sequence log-prob ``[B]`` and ``lengths`` the response lengths |y| ``[B]``
    (clamped to ≥ 1). γ ≥ 0 is the reward margin exactly as in the paper's equation; note
    that the authors' code (Unlearn-Simple) subtracts its ``gamma`` *inside* the β factor,
    i.e. ``γ_here = β · gamma_code`` — identical at the default γ = 0. The loss decreases
    monotonically as log πθ(y|x) falls and, unlike NPO, needs no reference model.
    """
    if beta <= 0:
        raise ValueError(f"simnpo beta must be > 0, got {beta}")
    norm_logp = to_acc(logp_seq) / lengths.to(torch.float32).clamp_min(1.0)
    return (-(2.0 / beta) * F.logsigmoid(-beta * norm_logp - gamma)).mean()
