"""Shared language-model primitives: chat prompts, teacher-forced encoding, batched greedy
generation and continuation log-likelihood. evaluate, attack, standardize and distill all use these,
so prompts are built one way everywhere (the chat template is always applied).
"""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

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


def cut_at_blank_line(text: str) -> str:
    """SPEC §5: generations are cut at the first blank line."""
    for sep in ("\n\n", "\r\n\r\n"):
        idx = text.find(sep)
        if idx >= 0:
            text = text[:idx]
    return text.strip()


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def generate(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = 48, batch_size: int = 16,
             cut_blank_line: bool = True, progress: bool | str = False) -> list[str]:
    """Greedy continuations of already-templated prompts, batched with left padding and a KV cache.

    Prompts are sorted by length so batches waste little padding; results come back in input order.
    """
    device = _model_device(model)
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out: list[str | None] = [None] * len(prompts)
    bar = tqdm(total=len(prompts), desc=progress if isinstance(progress, str) else "generate",
               disable=not progress, unit="q")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = pad_batch([encoded[i] for i in idx], tokenizer.pad_token_id, left=True)
        gen = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
            do_sample=False, num_beams=1, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, temperature=None, top_p=None, top_k=None,
            # The text is cut at the first blank line anyway: stopping a row there lets a batch finish
            # as soon as every row is done instead of running all to max_new_tokens.
            **({"stop_strings": ["\n\n"], "tokenizer": tokenizer} if cut_blank_line else {}),
        )
        for row, i in enumerate(idx):
            text = tokenizer.decode(gen[row, ids.shape[1]:], skip_special_tokens=True)
            out[i] = cut_at_blank_line(text) if cut_blank_line else text.strip()
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]


@torch.inference_mode()
def continuation_logprobs(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str], *,
                          batch_size: int = 16, add_eot: bool = False, progress: bool | str = False) -> list[float]:
    """Mean per-token log-likelihood of each continuation after its prompt (MCQ scoring, attack search)."""
    assert len(prompts) == len(continuations)
    device = _model_device(model)
    pairs = [encode_pair(tokenizer, p, c, add_eot=add_eot) for p, c in zip(prompts, continuations)]
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]))
    scores: list[float] = [float("nan")] * len(pairs)
    bar = tqdm(total=len(pairs), desc=progress if isinstance(progress, str) else "score",
               disable=not progress, unit="seq")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = pad_batch([pairs[i][0] for i in idx], tokenizer.pad_token_id)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = ids[:, 1:].to(device)
        tok_lp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        for row, i in enumerate(idx):
            full, resp = pairs[i]
            n = len(resp)
            if n == 0:
                continue
            end = len(full) - 1  # logits at t predict token t+1
            scores[i] = tok_lp[row, end - n:end].mean().item()
        bar.update(len(idx))
    bar.close()
    return scores
