"""The training loop behind `mule distill`: a plain function, `distill(config)`.

One optimizer step = `grad_accum` micro-batches of `batch_size` records each (global, split across
torchrun ranks). Per-objective loss sums are divided by the objective's unit count over the whole
step, so accumulation and data parallelism reproduce the one-big-batch gradient.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Callable, NamedTuple

import click
import torch
from tqdm.auto import tqdm

from ..errors import MuleError
from ..intentions import build_intentions, parse_demos
from ..kernels import NonFiniteLogits, backend
from ..models import pick_device, pick_dtype, resolve_model, load_tokenizer
from ..records import OBJECTIVES, read_many
from . import checkpoint, on_grid, output, quant_aware
from . import distributed as D
from .batches import (anchor_units, build_examples, collate, demo_pool, split_for_rank, student_prompt, teacher_prompt,
                      training_plan)
from .config import DISTILL_METHODS, DistillConfig, config_changes
from .forward import ResponseLogits, decoder_layers, tied_head
from .lora import add_lora, merge_lora
from .methods import chunked_loss_sums, loss_sums, spec_for, units
from .responses import records_answered_by, states_answer, teacher_responses
from .refusal_anchors import is_anchor, parse_objectives as parse_anchor_objectives, refusal_anchor_records
from .teacher import Teacher


class Interrupted(MuleError):
    """Ctrl-C: the checkpoint was saved; exit like an interrupted shell command."""

    exit_code = 130


class NonFiniteAbort(MuleError):
    pass


def warn(message: str, dist: D.Dist | None = None) -> None:
    if dist is None or dist.main:
        click.echo(f"warning: {message}", err=True)


def _load_lm(path: Path, dtype, device: str):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, use_safetensors=True)
    lm.config.__dict__.pop("quantization_config", None)
    return lm.to(device)


def adamw(params: list, lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW, fused where torch has the kernel for these parameters (float tensors on CPU or CUDA). Why: the fused
    step updates a tensor in one pass, while the default step allocates temporaries the size of each parameter
    (two per tensor in the CPU loop; on CUDA, foreach, the whole model's), which set the peak memory of a small
    batch."""
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in tensors)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def lr_lambda(cfg: DistillConfig, total: int) -> Callable[[int], float]:
    warm = min(cfg.warmup_steps, max(total - 1, 0))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        if cfg.schedule == "constant" or total <= warm:
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        if cfg.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def check_objectives(records, used, dist) -> None:
    present = {r["objective"] for r in records}
    missing = [o for o in OBJECTIVES if o not in present]
    if missing:
        warn(f"the data has no {', '.join(missing)} records; those objectives are not trained "
             f"(SPEC §1: every objective needs data to be kept or removed)", dist)
    if not any(r["objective"] in used for r in records):
        raise MuleError(f"no records for the objectives this method trains ({', '.join(used)})")


def _flat_grads(params, grads) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for p, g in zip(params, grads)])


def _cosines(vectors: dict[str, torch.Tensor]) -> dict[str, float]:
    keys = sorted(vectors)
    out = {}
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            va, vb = vectors[a], vectors[b]
            denom = va.norm() * vb.norm()
            out[f"{a}|{b}"] = float(va @ vb / denom) if denom > 0 else float("nan")
    return out


def distill(cfg: DistillConfig, records: list[dict] | None = None, *,
            on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Train the student and write cfg.output; returns a summary dict (paths, steps, last losses).

    `on_step(step, row)` is called after each optimizer step (library hook: custom logging, tests).
    """
    device = pick_device(cfg.device)
    dist = D.init(device)
    device = D.device_for(dist, device)
    out = Path(cfg.output)
    try:
        return _distill(cfg, records, dist, device, out, on_step)
    finally:
        D.cleanup(dist)


def _rank0_first(dist: D.Dist, fn):
    """Run fn on rank 0; re-raise its MuleError on every rank instead of hanging the others."""
    err = None
    if dist.main:
        try:
            fn()
        except MuleError as exc:
            err = exc.message
    err = D.broadcast_object(dist, err)
    if err:
        raise MuleError(err)


def _cached_answers(dist, teacher, tokenizer, records, texts, model_path, progress, label) -> dict:
    """{record id: greedy answer to its text}; rank 0 generates (cached on disk), the other ranks read the cache."""
    got = None
    if dist.main:
        got = teacher_responses(teacher.lm, tokenizer, records, texts, str(model_path), progress=progress, label=label)
    D.barrier(dist)
    if not dist.main:
        got = teacher_responses(None, tokenizer, records, texts, str(model_path), generate_missing=False)
    if got is None:
        raise MuleError("rank 0 did not write the generated responses cache")
    return got


def _generated_responses(cfg, spec, dist, teacher, tokenizer, train_records, prompts,
                         model_path) -> tuple[dict | None, dict | None]:
    """({record id: generated answer} for the objectives whose `--response` source is teacher or base,
    {record id: the base's answer} for the records of the `--demo-answers base` objectives, only where that
    answer states the data answer: the demos are drawn from those records first). The base answers come
    first: the teacher's own answers are generated with those demos in its context."""
    if spec.name not in DISTILL_METHODS:
        return None, None
    sources = cfg.response_sources
    response_recs = records_answered_by(train_records, sources, "base")
    shown, counts = demo_pool(train_records), parse_demos(cfg.demos)
    demo_recs = [r for r in shown if cfg.demo_answer_sources[r["objective"]] == "base" and counts[r["objective"]] > 0]
    answered = {r["id"] for r in response_recs}
    base_recs = response_recs + [r for r in demo_recs if r["id"] not in answered]
    base = {}
    if base_recs:
        base = _cached_answers(dist, teacher, tokenizer, base_recs, [student_prompt(tokenizer, r) for r in base_recs],
                               model_path, cfg.progress, "base answers")
    demo_answers = {r["id"]: base[r["id"]].strip() for r in demo_recs if states_answer(base[r["id"]], r["answer"])}
    out = {r["id"]: base[r["id"]] for r in response_recs}
    teacher_recs = records_answered_by(train_records, sources, "teacher")
    if teacher_recs:
        texts = [teacher_prompt(tokenizer, r, train_records, prompts, cfg.teacher, cfg.demos, cfg.refusal,
                                demo_answers or None) for r in teacher_recs]
        out.update(_cached_answers(dist, teacher, tokenizer, teacher_recs, texts, model_path, cfg.progress,
                                   "teacher answers"))
    return out or None, demo_answers or None


def _training_records(cfg, spec, records, dist) -> list[dict]:
    """The records the method trains on, plus the refusal anchors of --refusal-anchors."""
    check_objectives(records, spec.objectives, dist)
    train_records = [r for r in records if r["objective"] in spec.objectives]
    anchored = parse_anchor_objectives(cfg.refusal_anchors)
    if not anchored:
        return train_records
    if spec.name not in DISTILL_METHODS:
        raise MuleError(f"--refusal-anchors needs a distillation method ({', '.join(DISTILL_METHODS)}), "
                        f"not {spec.name}: the anchors are distilled from the plain frozen model")
    if "retain" not in spec.objectives:
        raise MuleError("--refusal-anchors are trained as retain records, but the retain weight is 0")
    return train_records + refusal_anchor_records(records, anchored, cfg.refusal)


def _student(cfg, spec, model_path, device):
    """(the trainable model in fp32 master weights, its --quant-aware switch or None, whether it trains on
    the Q4_1 grid); bf16 comes from autocast on GPU."""
    torch.manual_seed(cfg.seed)
    lm = _load_lm(model_path, torch.float32, device)
    if cfg.lora_rank:
        add_lora(lm, cfg.lora_rank, cfg.lora_alpha)
    quant = quant_aware.enable(lm, cfg.quant_aware) if cfg.quant_aware else None
    other_reparam = bool(cfg.lora_rank or cfg.quant_aware or cfg.fsdp)
    grid = on_grid.apply(cfg.on_grid, spec.name, lm, other_reparam=other_reparam) > 0
    if cfg.gradient_checkpointing:
        if hasattr(lm, "activation_checkpointing_enable"):  # transformers >= 5 name
            lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # non-reentrant: DDP-safe
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lm.config.use_cache = False
    return lm.train(), quant, grid


class ChunkedHead(NamedTuple):
    weight: Callable[[], torch.Tensor]  # the student's lm_head weight (on the --quant-aware grid when quantized)
    sparse_grad: bool  # a head tied to the input embedding, no fake-quantization between: its gradient goes sparse


def _chunked_head(cfg, spec, lm, teacher, quant, device) -> ChunkedHead | None:
    """For `ours`: the student's lm_head, so the loss runs from hidden states chunk by chunk (kernels/chunked.py)
    and neither side's [B, R, V] logits exist; measured no slower than the logits path even at the default
    model's 49,152 tokens, and far smaller from 65,536 on (docs/BENCHMARKS.md). None = the logits path: other
    methods, FSDP (the head is sharded outside the forward), a soft-capped or unusual head (no teacher cache),
    `--loss-impl reference`, or no fused kernel."""
    head = lm.get_output_embeddings()
    if (spec.name != "ours" or cfg.fsdp or cfg.loss_impl == "reference" or teacher is None or teacher.cache is None
            or head is None or not backend(device).startswith("fused")):
        return None
    return ChunkedHead(lambda: quant.weight(head.weight) if quant is not None else head.weight,
                       sparse_grad=quant is None and tied_head(lm))


def _distill(cfg, records, dist, device, out, on_step) -> dict:
    spec = spec_for(cfg)
    _rank0_first(dist, lambda: output.prepare(out, overwrite=cfg.overwrite, resume=cfg.resume))
    if records is None:
        records = read_many(cfg.data)
    train_records = _training_records(cfg, spec, records, dist)

    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    prompts = build_intentions(cfg.target, cfg.intentions, cfg.refusal) if spec.prompted_teacher else None
    dtype = pick_dtype(cfg.dtype, device)
    autocast_dtype = dtype if dtype != torch.float32 else None

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    need_teacher = spec.prompted_teacher or spec.reference
    teacher = Teacher(_load_lm(model_path, dtype, device), cfg.amplify, autocast_dtype) if need_teacher else None

    generated, demo_answers = _generated_responses(cfg, spec, dist, teacher, tokenizer, train_records, prompts,
                                                   model_path)
    examples = build_examples(train_records, tokenizer, method=spec.name, prompts=prompts, teacher_mode=cfg.teacher,
                              n_demos=cfg.demos, max_length=cfg.max_length, generated=generated, refusal=cfg.refusal,
                              demo_answers=demo_answers)
    if teacher is not None:
        teacher.use_examples(examples)
    objectives = [e.objective for e in examples]
    plan = training_plan(anchor_units(train_records), objectives, batch_size=cfg.batch_size,
                         grad_accum=cfg.grad_accum, seed=cfg.seed, epochs=cfg.epochs, max_steps=cfg.max_steps)
    total = len(plan)

    lm, quant, grid = _student(cfg, spec, model_path, device)
    module = D.wrap(ResponseLogits(lm), dist, fsdp=cfg.fsdp, device=device)
    head = _chunked_head(cfg, spec, lm, teacher, quant, device)
    optimizer = adamw(on_grid.param_groups(module, cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total))

    start, bad_run = 0, 0
    if cfg.resume:
        trainer = checkpoint.load(out, module, optimizer, scheduler)
        changed = config_changes(trainer["config"], cfg)
        if changed:
            raise MuleError(f"--resume: options differ from the checkpointed run ({', '.join(changed)}); "
                            f"resume with the same options")
        start, bad_run = trainer["step"], trainer.get("bad_run", 0)
        if teacher is not None and teacher.cache is not None:
            teacher.cache.update(trainer["teacher_cache"])

    info = {"status": "running", "options": cfg.to_dict(), "data_sha256": output.data_fingerprint(cfg.data, records),
            "versions": output.versions(), "model_path": str(model_path), "world_size": dist.world,
            "device": device, "dtype": str(dtype).replace("torch.", ""), "total_steps": total,
            "records": {o: sum(1 for r in records if r["objective"] == o) for o in OBJECTIVES},
            "refusal_anchors": sum(1 for r in train_records if is_anchor(r)),
            "intentions": prompts, "loss_from_hidden_states": head is not None, "on_grid": grid,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    log = None
    if dist.main:
        output.write_run(out, info)
        log = output.TrainLog(out, keep_until_step=start if cfg.resume else 0)

    teacher_cache = teacher.cache if teacher is not None and dist.main else None

    def trainer_state(step):
        return {"step": step, "bad_run": bad_run, "config": cfg.to_dict()}

    cos_params = [p for layer in decoder_layers(lm)[-3:] for p in layer.parameters() if p.requires_grad]
    bar = tqdm(total=total, initial=start, desc="distill", unit="step", disable=not (cfg.progress and dist.main))
    last_row: dict = {}
    step = start
    in_update = False
    try:
        while step < total:
            if quant is not None:
                quant.set_step(step)
            t0 = time.perf_counter()
            cosine_now = cfg.grad_cosine and step % cfg.grad_cosine == 0
            row = _train_step(cfg, spec, plan[step], examples, module, head, teacher, tokenizer.pad_token_id,
                              dist, device, autocast_dtype, cos_params if cosine_now else None)
            if row["finite"]:
                in_update = True
                optimizer.step()
                scheduler.step()
                in_update = False
                bad_run = 0
            else:
                bad_run += 1
                warn(f"step {step + 1}: non-finite loss or gradient; step skipped ({bad_run} in a row)", dist)
            optimizer.zero_grad(set_to_none=True)
            if bad_run >= cfg.max_bad_steps:
                kept = checkpoint.find(out)
                raise NonFiniteAbort(f"{bad_run} non-finite steps in a row (last: step {step + 1}); stopped. "
                                     + (f"Last good checkpoint kept at {kept}." if kept else
                                        "No checkpoint was saved (use --save-every)."))
            step += 1
            elapsed = time.perf_counter() - t0
            row = {"step": step, "loss": row["loss"], **{f"loss_{o}": v for o, v in row["per_objective"].items()},
                   "lr": scheduler.get_last_lr()[0], "grad_norm": row["grad_norm"],
                   "tokens_per_s": round(row["tokens"] / elapsed, 1), "skipped": not row["finite"],
                   **({"grad_cosine": row["cosine"]} if row.get("cosine") else {})}
            last_row = row
            if log is not None:
                log.write(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row['tokens_per_s']:.0f}")
            if on_step is not None:
                on_step(step, row)
            if cfg.save_every and (step % cfg.save_every == 0 or step == total):
                checkpoint.save(out, module, optimizer, scheduler, trainer_state(step), dist, teacher_cache)
    except KeyboardInterrupt:
        bar.close()
        if in_update:  # weights half-updated: the previous checkpoint is the consistent one
            raise Interrupted(f"interrupted during an update; resume from the last checkpoint with --resume") from None
        optimizer.zero_grad(set_to_none=True)
        path = checkpoint.save(out, module, optimizer, scheduler, trainer_state(step), dist, teacher_cache)
        raise Interrupted(f"interrupted after step {step}/{total}; checkpoint saved to {path}; "
                          f"continue with the same command plus --resume") from None
    finally:
        bar.close()
        if log is not None:
            log.close()

    if quant is not None:
        quant.remove()
    if grid:
        on_grid.finish(lm)  # the grid's weights into plain Linear weights
    if cfg.lora_rank:
        merge_lora(lm)  # a plain model folder: the adapters folded into the weights
    state = D.full_state_dict(module)
    model_dir = out / output.MODEL
    if dist.main:
        state = {k[len("lm."):] if k.startswith("lm.") else k: v for k, v in state.items()}
        output.save_model(out, lm, state, tokenizer)
        info.update(status="done", steps=step, final=last_row, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        output.write_run(out, info)
    D.barrier(dist)
    return {"output": str(out), "model": str(model_dir), "steps": step, "last": last_row}


def _train_step(cfg, spec, micro_batches, examples, module, head, teacher, pad_id, dist, device, autocast_dtype,
                cos_params) -> dict:
    """Forward/backward over the step's micro-batches; returns metrics and whether the update is finite."""
    counts = _unit_counts(spec, [examples[i] for mb in micro_batches for i in mb])
    sums, tokens, finite, cos_vecs = dict.fromkeys(OBJECTIVES, 0.0), 0, True, {}
    for i, mb in enumerate(micro_batches):
        local = split_for_rank(mb, dist.rank, dist.world)  # empty: fewer records than ranks
        batch = collate([examples[j] for j in (local or mb[:1])], pad_id)
        with D.no_sync(module, dist.enabled and i < len(micro_batches) - 1):
            loss, terms, ok = _micro_batch_loss(cfg, spec, batch, module, head, teacher, device, autocast_dtype,
                                                counts)
            finite &= ok
            if cos_params is not None and ok and local:
                for obj, vec in _objective_grads(cfg, terms, counts, cos_params).items():
                    cos_vecs[obj] = cos_vecs[obj] + vec if obj in cos_vecs else vec
            (loss * (dist.world if local else 0.0)).backward()  # every rank joins the gradient all-reduce
        if local:
            tokens += batch.tokens()
            for obj, value in terms.items():
                sums[obj] += float(value.detach())
    stats = D.sum_over_ranks(dist, [*sums.values(), float(tokens), 0.0 if finite else 1.0])
    per_objective = {o: stats[j] / counts[o] for j, o in enumerate(OBJECTIVES)
                     if counts.get(o) and o in spec.objectives}
    grad_norm = _clip_grad_norm(module, cfg.max_grad_norm) if stats[-1] == 0.0 else float("nan")
    row = {"loss": sum(cfg.weights[o] * v for o, v in per_objective.items()), "per_objective": per_objective,
           "tokens": stats[-2], "finite": math.isfinite(grad_norm), "grad_norm": grad_norm}
    if cos_vecs and dist.main:
        row["cosine"] = _cosines(cos_vecs)
    return row


def _unit_counts(spec, step_examples) -> dict[str, int]:
    """{objective: loss units in the whole step}: the denominators of the per-objective means."""
    counts: dict[str, int] = {}
    for ex in step_examples:
        counts[ex.objective] = counts.get(ex.objective, 0) + units(spec, ex.objective, ex.n)
    return counts


def _micro_batch_loss(cfg, spec, batch, module, head, teacher, device, autocast_dtype, counts):
    """(weighted loss on the graph, {objective: loss sum}, finite). A non-finite batch gives a zero loss
    that still reaches every parameter, so the step can be skipped on all ranks alike. `head` (see
    _chunked_head): the student returns hidden states and the loss multiplies them by the head in chunks."""
    autocast = torch.autocast(torch.device(device).type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    with autocast:
        s = module(*(t.to(device) for t in (batch.student.input_ids, batch.student.attention_mask,
                                             batch.student.positions)), hidden=head is not None)
    # no up-cast: the losses accumulate in fp32 themselves, and the fused kernel reads bf16/fp16 logits
    # directly (an fp32 copy of [B, R, V] would be the step's largest tensor)
    zero = s.sum() * 0.0
    if not bool(torch.isfinite(s[batch.student.valid.to(device)]).all()):
        return zero, {}, False
    try:
        if head is None:
            terms = loss_sums(spec, cfg, batch, s, teacher)
        else:
            with autocast:
                terms = chunked_loss_sums(spec, cfg, batch, s, head.weight(), teacher, head.sparse_grad)
    except NonFiniteLogits:  # the teacher's logits
        return zero, {}, False
    loss = sum((cfg.weights[obj] * value / counts[obj] for obj, value in terms.items()), zero)
    if not bool(torch.isfinite(loss)):
        return zero, terms, False
    return loss, terms, True


def _objective_grads(cfg, terms, counts, params) -> dict[str, torch.Tensor]:
    """{objective: its weighted loss's gradient on `params`, flattened} for --grad-cosine."""
    out = {}
    for obj, value in terms.items():
        grads = torch.autograd.grad(cfg.weights[obj] * value / counts[obj], params, retain_graph=True,
                                    allow_unused=True)
        out[obj] = _flat_grads(params, grads)
    return out


def _clip_grad_norm(module, max_norm: float) -> float:
    """Clip (max_norm <= 0: only measure) and return the global gradient norm."""
    params = [p for p in module.parameters() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # FSDP2: the norm is a DTensor over the shards
        norm = norm.full_tensor()
    return float(norm)
