"""The frozen teacher: the base model, read under torch.inference_mode.

It gives (a) its logits at the response positions with the intention prompt in context, optionally
amplified per objective (--amplify λ: t_p + λ·(t_p − t_plain), where t_plain is the same model on the
student's context; by default on the forget-like records only), and (b) plain-context log-likelihoods,
the reference of NPO.
"""

from __future__ import annotations

import torch

from .batches import Batch
from .config import parse_amplify
from .forward import ResponseLogits

class Teacher:
    def __init__(self, lm, amplify: float | dict = 0.0, autocast_dtype=None):
        """amplify: λ for forget/adversarial records, or {objective: λ}."""
        self.lm = lm.eval()
        for p in self.lm.parameters():
            p.requires_grad_(False)
        self.head = ResponseLogits(self.lm)
        self.amplify = parse_amplify(amplify)
        self.autocast_dtype = autocast_dtype
        self.device = next(lm.parameters()).device

    def _run(self, side) -> torch.Tensor:
        """Response logits in the dtype the model computes them (bf16 under bf16 autocast)."""
        side = side.to(self.device)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            return self.head(side.input_ids, side.attention_mask, side.positions)

    def logits(self, batch: Batch) -> torch.Tensor:
        """Teacher logits [B, R, V] aligned row by row with the student's response logits, in the model's
        compute dtype: the losses accumulate in fp32 themselves and the fused kernel reads bf16 directly,
        so an fp32 copy would only double the step's largest tensor. Amplification is computed in fp32 and
        rounded once."""
        with torch.inference_mode():
            t = self._run(batch.teacher)
            rows = [i for i, o in enumerate(batch.objectives) if self.amplify[o]]
            if rows:
                plain = self._run(_rows(batch.student, rows)).float()
                lam = torch.tensor([self.amplify[batch.objectives[i]] for i in rows], device=t.device)
                prompted = t[rows].float()
                t[rows] = (prompted + lam.view(-1, 1, 1) * (prompted - plain)).to(t.dtype)
        return t.clone()  # a normal tensor: inference tensors cannot be saved for backward

    def plain_token_logprobs(self, batch: Batch) -> torch.Tensor:
        """log p_ref(y_j) [B, R] of the response tokens in the student's (plain) context; 0 where invalid."""
        from ..losses.sequence import token_logprobs

        with torch.inference_mode():
            logits = self._run(batch.student)
            lp = token_logprobs(logits, batch.student.labels.to(self.device))
        return lp.clone()


def _rows(side, rows):
    from .batches import Side

    idx = torch.tensor(rows, dtype=torch.long)
    return Side(*(t[idx] for t in (side.input_ids, side.attention_mask, side.positions, side.labels, side.valid)))
