"""Shared language-model primitives: chat prompts, teacher-forced encoding, batched greedy
generation and continuation log-likelihood. evaluate, attack, standardize and distill all use these,
so prompts are built one way everywhere (the chat template is always applied).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from . import greedy, kv_prefix
from .models import BATCH_SIZE

Message = dict  # {"role": "system"|"user"|"assistant", "content": str}


def chat_prompt(tokenizer, question: str, *, prefill: str | None = None,
                context: Sequence[Message] = ()) -> str:
    """The text that precedes the assistant's answer: template(context + user question) + prefill.

    `context` holds extra messages before the question (a system intention prompt, few-shot turns).
    """
    messages = [*context, {"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + (prefill or "")


def end_of_turn_ids(tokenizer) -> list[int]:
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def encode_pair(tokenizer, prompt: str, response: str, *, add_eot: bool = True) -> tuple[list[int], list[int]]:
    """Token ids of prompt+response and the ids of the response part alone.

    The response is tokenised on its own so that student and teacher (different prompts) are forced
    on exactly the same response tokens, position for position.
    """
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"]
    if add_eot:
        r = r + end_of_turn_ids(tokenizer)
    return p + r, r


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, *, left: bool = False):
    """Pad to a [B, L] tensor; returns (input_ids, attention_mask)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if not seq:
            continue
        sl = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[i, sl] = torch.tensor(list(seq), dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


BLANK_LINES = ("\n\n", "\r\n\r\n")


def cut_at_blank_line(text: str) -> str:
    """SPEC §5: generations are cut at the first blank line."""
    for sep in BLANK_LINES:
        idx = text.find(sep)
        if idx >= 0:
            text = text[:idx]
    return text.strip()


def _has_blank_line(tokenizer) -> Callable[[list[int]], bool]:
    return lambda tokens: any(sep in tokenizer.decode(tokens, skip_special_tokens=True) for sep in BLANK_LINES)


def generate(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = 48, batch_size: int = BATCH_SIZE,
             cut_blank_line: bool = True, progress: bool | str = False) -> list[str]:
    """Greedy continuations of already-templated prompts, batched, results in input order.

    Prompts are sorted by length so batches waste little padding. `greedy.py` encodes the prompt prefix
    rows share once and lets finished rows leave the batch; models it cannot run exactly (sliding-window
    attention, logits processors in their generation config) go through transformers' `generate`.
    """
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    bar = tqdm(total=len(prompts), desc=progress if isinstance(progress, str) else "generate",
               disable=not progress, unit="q")
    if greedy.supported(model):
        # The text is cut at the first blank line anyway: stopping a row there ends its work early.
        tokens = greedy.greedy_tokens(model, encoded, max_new_tokens=max_new_tokens, pad_id=tokenizer.pad_token_id,
                                      eos_ids=end_of_turn_ids(tokenizer), batch_size=batch_size,
                                      stop=_has_blank_line(tokenizer) if cut_blank_line else None, on_rows=bar.update)
    else:
        tokens = _transformers_generate(model, tokenizer, encoded, max_new_tokens, batch_size, cut_blank_line, bar)
    bar.close()
    texts = [tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
    return [cut_at_blank_line(t) if cut_blank_line else t.strip() for t in texts]


@torch.inference_mode()
def _transformers_generate(model, tokenizer, encoded, max_new_tokens, batch_size, cut_blank_line, bar):
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list[list[int]] = [[] for _ in encoded]
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = pad_batch([encoded[i] for i in idx], tokenizer.pad_token_id, left=True)
        gen = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
            do_sample=False, num_beams=1, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, temperature=None, top_p=None, top_k=None,
            **({"stop_strings": ["\n\n"], "tokenizer": tokenizer} if cut_blank_line else {}),
        )
        for row, i in enumerate(idx):
            out[i] = gen[row, ids.shape[1]:].tolist()
        bar.update(len(idx))
    return out


@torch.inference_mode()
def continuation_logprobs(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str], *,
                          batch_size: int = BATCH_SIZE, add_eot: bool = False, progress: bool | str = False) -> list[float]:
    """Mean per-token log-likelihood of each continuation after its prompt (MCQ scoring, attack search).

    The prompt prefix rows share (the system turn; a question scored with many prefills) is encoded once
    (kv_prefix.py), and left padding puts every continuation at the end of its row, so logits are computed
    only for the last (longest continuation + 1) positions: [B, K, V], never [B, L, V].
    """
    assert len(prompts) == len(continuations)
    pairs = [encode_pair(tokenizer, p, c, add_eot=add_eot) for p, c in zip(prompts, continuations)]
    seqs = [full for full, _ in pairs]
    # the prompt minus its last token (which predicts the continuation) may be cached
    prefixes, rests, kv = kv_prefix.split_prefixes(model, seqs, [f[:len(f) - len(r) - 1] for f, r in pairs])
    order = sorted(range(len(pairs)), key=lambda i: len(rests[i]))
    scores: list[float] = [float("nan")] * len(pairs)
    bar = tqdm(total=len(pairs), desc=progress if isinstance(progress, str) else "score",
               disable=not progress, unit="seq")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        keep = max(len(pairs[i][1]) for i in idx) + 1
        if keep > 1:
            inputs = kv_prefix.batch_inputs(model, [rests[i] for i in idx], [prefixes[i] for i in idx], kv,
                                            tokenizer.pad_token_id)
            logits = model(**inputs, logits_to_keep=keep).logits[:, -keep:-1].float()  # t predicts token t+1
            ids = inputs["input_ids"]
            target = ids[:, ids.shape[1] - keep + 1:]
            tok_lp = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
            for row, i in enumerate(idx):
                n = len(pairs[i][1])
                if n:
                    scores[i] = tok_lp[row, keep - 1 - n:].mean().item()
        bar.update(len(idx))
    bar.close()
    return scores
