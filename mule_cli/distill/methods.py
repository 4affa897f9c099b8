"""Per-method loss terms, split by objective.

Each method turns one micro-batch into {objective: SUM of its loss units}, where a unit is a
response token (token-level losses) or a record (NPO/SimNPO forget terms). The trainer divides each
sum by the objective's unit count over the WHOLE optimizer step (all micro-batches, all ranks) and
weights it: loss = Σ_o w_o · mean_o. Known counts up front make gradient accumulation and DDP give
the same gradient as one big batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..losses import bild_loss, ga_loss, nll_loss, npo_loss, simnpo_loss, token_logprobs, topk_smooth_l1
from ..losses import defaults as D
from ..losses.sequence import sequence_lengths, sequence_logprob
from ..records import FORGET_LIKE
from .config import METHODS



@dataclass(frozen=True)
class MethodSpec:
    name: str
    objectives: tuple  # objectives the method trains on
    prompted_teacher: bool  # needs the intention-prompted teacher's logits
    reference: bool  # needs the frozen model's plain-context log-probs (NPO)
    sequence_level_forget: bool  # forget-like units are records, not tokens
    forget_weight: float = 1.0
    retain_weight: float = 1.0


ALL = ("forget", "retain", "neighbor", "adversarial")
SPECS = {
    "ours": MethodSpec("ours", ALL, True, False, False, 1.0, 0.0),
    "duet": MethodSpec("duet", ALL, True, False, False, 1.0, 0.0),
    "bild": MethodSpec("bild", ALL, True, False, False, 1.0, 0.0),
    "sft": MethodSpec("sft", ALL, False, False, False),
    "ga": MethodSpec("ga", FORGET_LIKE, False, False, False, D.GA_FORGET_WEIGHT, 0.0),
    "graddiff": MethodSpec("graddiff", ALL, False, False, False, D.GRADDIFF_FORGET_WEIGHT, D.GRADDIFF_RETAIN_WEIGHT),
    "npo": MethodSpec("npo", ALL, False, True, True, 1.0, D.NPO_RETAIN_WEIGHT),
    "simnpo": MethodSpec("simnpo", ALL, False, False, True, D.SIMNPO_FORGET_WEIGHT, D.SIMNPO_RETAIN_WEIGHT),
}


assert tuple(SPECS) == METHODS, "every method needs a spec"


def spec_for(cfg) -> MethodSpec:
    spec = SPECS[cfg.method]
    objectives = tuple(o for o in spec.objectives if cfg.weights.get(o, 1.0) > 0)
    fw = spec.forget_weight if cfg.forget_weight is None else cfg.forget_weight
    rw = spec.retain_weight if cfg.retain_weight is None else cfg.retain_weight
    return MethodSpec(spec.name, objectives, spec.prompted_teacher, spec.reference, spec.sequence_level_forget, fw, rw)


def units(spec: MethodSpec, objective: str, n_tokens: int) -> int:
    """How many loss units a record contributes (the denominators of the per-objective means)."""
    return 1 if spec.sequence_level_forget and objective in FORGET_LIKE else n_tokens


def objective_rows(spec: MethodSpec, batch, device):
    """(objective, its row indices in the batch) for each objective of the batch the method trains."""
    for obj in dict.fromkeys(batch.objectives):
        if obj in spec.objectives:
            yield obj, torch.tensor([i for i, o in enumerate(batch.objectives) if o == obj], device=device)


def chunked_loss_sums(spec: MethodSpec, cfg, batch, student_hidden: torch.Tensor, student_head: torch.Tensor,
                      teacher, sparse_head_grad: bool = False) -> dict[str, torch.Tensor]:
    """`ours` from hidden states: {objective: summed loss}, equal to loss_sums on the logits, without
    either side's [B, R, V] logits or a dense logits gradient (kernels/chunked.py). sparse_head_grad: the
    head is tied to the input embedding (its gradient is then added into the embedding's)."""
    from ..kernels.chunked import topk_union_smooth_l1_rows_from_hidden

    valid = batch.student.valid.to(student_hidden.device)
    # one call for the whole batch, so the step builds one dense lm_head gradient, not one per objective
    per_position = topk_union_smooth_l1_rows_from_hidden(student_hidden, student_head, teacher.hidden_targets(batch),
                                                         teacher.head_weight, k=cfg.top_k, beta=cfg.beta, valid=valid,
                                                         sparse_weight_grad=sparse_head_grad)
    return {obj: per_position[rows].sum() for obj, rows in objective_rows(spec, batch, student_hidden.device)}


def loss_sums(spec: MethodSpec, cfg, batch, student_logits: torch.Tensor, teacher=None) -> dict[str, torch.Tensor]:
    """{objective: summed loss over its units in this micro-batch} (fp32 scalars on the graph)."""
    valid = batch.student.valid.to(student_logits.device)
    labels = batch.student.labels.to(student_logits.device)
    t_logits = teacher.logits(batch) if spec.prompted_teacher else None
    ref_lp = teacher.plain_token_logprobs(batch) if spec.reference else None
    out = {}
    for obj, rows in objective_rows(spec, batch, student_logits.device):
        s, v = student_logits[rows], valid[rows]
        n_tok = v.sum().to(torch.float32)
        if spec.prompted_teacher:
            t = t_logits[rows]  # each at its own precision: the losses compute in fp32 (kernel_inputs)
            if spec.name == "bild":
                per = bild_loss(s, t, v, top_k=cfg.bild_top_k, temperature=cfg.bild_temperature)
            else:
                per = topk_smooth_l1(s, t, v, k=cfg.top_k, beta=cfg.beta, union=spec.name == "ours",
                                     impl=cfg.loss_impl)
            out[obj] = per * n_tok
            continue
        lp = token_logprobs(s, labels[rows])
        forget_like = obj in FORGET_LIKE
        if spec.name == "sft" or (not forget_like):
            weight = 1.0 if spec.name == "sft" else spec.retain_weight
            out[obj] = weight * nll_loss(lp, v) * n_tok
        elif spec.name in ("ga", "graddiff"):
            out[obj] = spec.forget_weight * ga_loss(lp, v) * n_tok
        elif spec.name == "npo":
            seq_ref = sequence_logprob(ref_lp[rows].to(lp.device), v)
            out[obj] = spec.forget_weight * npo_loss(sequence_logprob(lp, v), seq_ref, cfg.npo_beta) * len(rows)
        elif spec.name == "simnpo":
            out[obj] = spec.forget_weight * simnpo_loss(sequence_logprob(lp, v), sequence_lengths(v), cfg.simnpo_beta,
                                                        cfg.simnpo_gamma) * len(rows)
        else:  # pragma: no cover - SPECS and this dispatch are kept in step
            raise AssertionError(spec.name)
    return out
