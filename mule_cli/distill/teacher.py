"""The frozen teacher: the base model, read under torch.inference_mode.

It gives (a) its logits at the response positions with the intention prompt in context, optionally
amplified per objective (--amplify λ: t_p + λ·(t_p − t_plain), where t_plain is the same model on the
student's context; by default on the forget-like records only), and (b) plain-context log-likelihoods,
the reference of NPO.

Teacher output cache: a record's teacher context and response tokens are the same every epoch, so its
target is computed once and kept: the final-norm hidden states at its response positions, with the amplification applied there (h_p + λ(h_p − h_plain):
the logits are linear in the hidden state), turned into logits through the lm_head at loss time. Keyed by
the exact token ids; `use_examples` drops the entries no example uses. Computing a
target runs each context on top of the prefix its group shares (prefix_cache.py), encoded once per run.
"""

from __future__ import annotations

import torch

from ..kv_prefix import prefix_cache_supported
from .batches import Batch
from .config import parse_amplify
from .forward import ResponseLogits
from .prefix_cache import PrefixCache

class Teacher:
    def __init__(self, lm, amplify: float | dict = 0.0, autocast_dtype=None, cache: bool = True):
        """amplify: λ for forget/adversarial records, or {objective: λ}; cache: keep each record's target."""
        self.lm = lm.eval()
        for p in self.lm.parameters():
            p.requires_grad_(False)
        self.net = ResponseLogits(self.lm)
        self.amplify = parse_amplify(amplify)
        self.autocast_dtype = autocast_dtype
        self.device = next(lm.parameters()).device
        # exact only when the logits are a linear function of the final hidden state
        self.cache: dict | None = {} if cache and self.net.logits_linear_in_hidden else None
        self.prefixes = PrefixCache(self.net) if self.cache is not None and prefix_cache_supported(lm) else None

    def share_prefixes(self, examples) -> None:
        """Declare the contexts the targets will be computed on, so the prefix each group of them shares
        (the teacher contexts of one objective; the plain contexts) is encoded once."""
        if self.prefixes is None:
            return
        groups: dict = {}
        for e in examples:
            if e.teacher_ids is not None:
                groups.setdefault(_teacher_group(e), []).append((e.teacher_ids, e.n + 1))
            if self.amplify[e.objective]:
                groups.setdefault(_PLAIN, []).append((e.student_ids, e.n + 1))
        for group, items in groups.items():
            self.prefixes.share(group, [s for s, _ in items], [k for _, k in items])

    def _run(self, side) -> torch.Tensor:
        """Response logits in the dtype the model computes them (bf16 under bf16 autocast)."""
        side = side.to(self.device)
        with self._autocast():
            return self.net(side.input_ids, side.attention_mask, side.positions)

    def logits(self, batch: Batch) -> torch.Tensor:
        """Teacher logits [B, R, V] aligned row by row with the student's response logits (see _logits);
        from the output cache where the record's target was computed before."""
        if self.cache is None:
            return self._logits(batch)
        h = self.hidden_targets(batch)
        with torch.inference_mode(), self._autocast():
            t = self.net.head(h)
        return t.clone()

    def hidden_targets(self, batch: Batch) -> torch.Tensor:
        """[B, R, d] amplified final hidden states whose lm_head product is the teacher's logits (zeros at
        padded response slots), on the teacher's device; needs the cache (a linear head)."""
        keys = [_key(e) for e in batch.examples]
        first_row: dict = {}
        for row, key in enumerate(keys):
            if key not in self.cache:
                first_row.setdefault(key, row)
        if first_row:
            self._fill(batch, list(first_row.values()), keys)
        width = batch.student.positions.shape[1]
        first = self.cache[keys[0]]
        h = torch.zeros(len(keys), width, first.shape[-1], dtype=first.dtype)
        for row, key in enumerate(keys):
            cached = self.cache[key]
            h[row, :cached.shape[0]] = cached
        return h.to(self.device)

    @property
    def head_weight(self) -> torch.Tensor:
        return self.net.head.weight

    def use_examples(self, examples) -> None:
        """The examples training runs on: cached targets no example uses are dropped and the prefixes their
        contexts share are declared (share_prefixes)."""
        if self.cache:
            live = {_key(e) for e in examples}
            for key in [k for k in self.cache if k not in live]:
                del self.cache[key]
        self.share_prefixes(examples)

    def _fill(self, batch: Batch, rows: list[int], keys: list) -> None:
        """Compute and cache the amplified final hidden states of batch rows `rows`."""
        with torch.inference_mode(), self._autocast():
            teacher, student = _rows(batch.teacher, rows).to(self.device), _rows(batch.student, rows).to(self.device)
            h = self._hidden(teacher, [_teacher_group(batch.examples[i]) for i in rows]).float()
            objectives = [batch.objectives[i] for i in rows]
            amp = [j for j, o in enumerate(objectives) if self.amplify[o]]
            if amp:
                plain = self._hidden(_rows(student, amp), [_PLAIN] * len(amp)).float()
                lam = torch.tensor([self.amplify[objectives[j]] for j in amp], device=h.device).view(-1, 1, 1)
                h[amp] = h[amp] + lam * (h[amp] - plain)
        store = h.to(self.autocast_dtype or torch.float32).cpu()
        for j, i in enumerate(rows):
            self.cache[keys[i]] = store[j, :batch.examples[i].n].clone()

    def _hidden(self, side, groups) -> torch.Tensor:
        if self.prefixes is None:
            return self.net.hidden(side.input_ids, side.attention_mask, side.positions)
        return self.prefixes.hidden(side, groups)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def _logits(self, batch: Batch) -> torch.Tensor:
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


_PLAIN = ("plain",)


def _teacher_group(example) -> tuple:
    """Teacher contexts that share a prefix: one objective's (an anchor's teacher context is the plain one)."""
    return ("teacher", example.objective, example.anchor)


def _key(example) -> tuple:
    """What a record's teacher target depends on: its objective and the exact tokens of both contexts."""
    return example.objective, tuple(example.teacher_ids or ()), tuple(example.student_ids), tuple(example.response_ids)
