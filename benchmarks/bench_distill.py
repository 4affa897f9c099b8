#!/usr/bin/env python
"""Benchmark one real `mule distill` training step on the default model, in `make demo`'s setting.

A step = teacher targets (intention prompt + demos in context, amplified as distill's defaults, which
make demo trains) + student forward at the response positions + the `ours` loss per objective + backward +
AdamW update, on a fixed batch of records drawn from examples/harry_potter (all four objectives mixed; each
teacher context's demos picked from the whole pool as in a real run: one fixed set per objective).
Variants (JSON `variant`):
  a              the path before the teacher caches: the teacher runs its whole contexts every step,
                 full [B, R, V] logits
  reference      a, with the pure-PyTorch loss instead of the fused kernel
  b              the prefix KV cache: the teacher runs every step, but only what follows the prefix its
                 contexts share (prefix_cache.py); = a first-epoch step of training
  c              prefix + output cache + chunked loss (no [B, R, V] logits), on a step whose teacher
                 targets are cached (every epoch after the first)
  c_first_epoch  c on a step that computes its teacher targets (the first epoch)
  cached_logits  c with the logits loss instead of the chunked one: what training ran before the
                 chunked loss became the default (FSDP still does)
  floor          a precomputed target: student forward + backward + optimizer step alone
  quant_aware    (--quant-aware GRID) c through fake-quantized weights
  on_grid        (--on-grid) c training only the Q4_1 grid's steps and offsets (and norm gains), as `mule
                 distill` does by default on the default model, which ships on that grid
--tiny-vocab V runs the same rows on a tiny random Llama with a V-token vocabulary (e.g. 128256, Llama 3's),
where the logits, not the model, dominate memory.

Each variant runs in its own child process so allocator state never leaks between them.
Peak memory:
  * CPU: (with a fixed malloc mmap threshold, so freed large blocks leave the process) the child resets
    the resident-set high-water mark (`echo 5 > /proc/self/clear_refs`) right
    before the measured step, reads VmRSS as the baseline, and reports VmHWM - baseline: the extra
    physical memory the step needed on top of models, optimizer state and inputs. Linux only.
  * CUDA: torch.cuda.max_memory_allocated() - memory_allocated() around the measured step.
Time: median over --repeats steps after --warmup steps. tokens/s counts student + teacher tokens.
JSON (--json): a list of rows {"model", "variant", "step_s", "peak_mb", ...details}.

Examples:
  python benchmarks/bench_distill.py                    # default model, CPU (fp32) or GPU (bf16 autocast)
  python benchmarks/bench_distill.py --batch-size 4 --repeats 2 --threads 2
  python benchmarks/bench_distill.py --quant-aware q4_1   # + a step through fake-quantized weights
  python benchmarks/bench_distill.py --on-grid            # + a step on the Q4_1 grid (training's default here)
  python benchmarks/bench_distill.py --tiny-vocab 128256 --json docs/benchmarks/distill_tiny128k.json
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import types
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HP = ROOT / "examples" / "harry_potter"


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def _records(n: int) -> list[dict]:
    from mule_cli.records import read_records

    pools = [read_records(HP / f"{name}.jsonl") for name in ("forget", "retain", "neighbor")]
    forget = pools[0]
    adversarial = [{**r, "id": r["id"] + "-adv", "objective": "adversarial", "prefill": "Sure, here is the answer:"}
                   for r in forget]
    pools.append(adversarial)
    out, i = [], 0
    while len(out) < n:
        pool = pools[i % 4]
        out.append(pool[(i // 4) % len(pool)])
        i += 1
    return out, forget + pools[1] + pools[2] + adversarial


def _tiny_model(vocab: int) -> str:
    """A tiny random Llama with `vocab` tokens and the default model's tokenizer, saved to a temp folder."""
    import tempfile

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mule_cli.models import DEFAULT_MODEL, load_tokenizer, resolve_model
    from mule_cli.quant import quantize_model_

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                         bos_token_id=1, eos_token_id=2, pad_token_id=2))
    quantize_model_(model, "q4_1")  # on the Q4_1 grid, as the default model ships (the on_grid row needs it)
    path = Path(tempfile.mkdtemp(prefix="mule-bench-tiny-"))
    model.save_pretrained(path, safe_serialization=True)
    load_tokenizer(resolve_model(DEFAULT_MODEL)).save_pretrained(path)
    return str(path)


def child(args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mule_cli.distill import on_grid
    from mule_cli.distill.batches import build_examples, collate
    from mule_cli.distill.config import DistillConfig
    from mule_cli.distill.forward import ResponseLogits
    from mule_cli.distill.methods import chunked_loss_sums, loss_sums, spec_for
    from mule_cli.distill.teacher import Teacher
    from mule_cli.distill.train import _chunked_head, adamw
    from mule_cli.intentions import build_intentions
    from mule_cli.models import pick_device, pick_dtype, resolve_model, load_tokenizer
    from transformers import AutoModelForCausalLM

    device = pick_device(args.device)
    dtype = pick_dtype("auto", device)
    autocast = dtype if dtype != torch.float32 else None
    path = resolve_model(args.model)
    tok = load_tokenizer(path)
    cfg = DistillConfig(data=["-"], model=args.model, loss_impl=args.impl, demos=args.demos, progress=False)
    spec = spec_for(cfg)
    batch_records, all_records = _records(args.batch_size)
    prompts = build_intentions(target="Harry Potter")  # the built-in templates, as `mule distill` uses
    # demos come from the whole pool (one fixed set per objective), and the prefixes are declared over
    # it, as in a real run
    pool = build_examples(all_records, tok, method="ours", prompts=prompts, n_demos=args.demos)
    by_id = {e.id: e for e in pool}
    examples = [by_id[r["id"]] for r in batch_records]
    batch = collate(examples, tok.pad_token_id)
    tokens = batch.tokens()
    teacher = Teacher(AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device),
                      cfg.amplify, autocast, cache=args.teacher == "cached")
    teacher.use_examples(pool)
    if args.teacher == "floor":  # the target computed once, outside the timed step
        fixed = teacher.logits(batch)
        teacher = types.SimpleNamespace(logits=lambda _batch: fixed)
    lm = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).to(device).train()
    quant = None
    if args.qa_child:  # --quant-aware: every measured step is a quantized one (training alternates)
        from mule_cli.distill.quant_aware import enable

        quant = enable(lm, args.qa_child)
    if args.grid_child:  # --on-grid: the Linear layers re-parametrized on their Q4_1 grid
        on_grid.enable(lm)
    student = ResponseLogits(lm)
    opt = adamw(on_grid.param_groups(student, 1e-5), lr=1e-5)  # training's optimizer and parameter groups
    cuda = device.startswith("cuda")

    # the chunked loss exactly as training takes it (the head on the quant-aware grid, a tied head's sparse gradient)
    head = _chunked_head(cfg, spec, lm, teacher, quant, device) if args.chunked else None
    if args.chunked and head is None:
        sys.exit("--chunked: training would take the logits path here")
    chunked = head is not None

    def step():
        if args.fresh:  # the first epoch: targets computed in the step (the prefix KV cache stays)
            teacher.cache.clear()
        with torch.autocast(torch.device(device).type, dtype=autocast, enabled=autocast is not None):
            s = student(*(t.to(device) for t in (batch.student.input_ids, batch.student.attention_mask,
                                                  batch.student.positions)), hidden=chunked)
            if chunked:
                terms = chunked_loss_sums(spec, cfg, batch, s, head.weight(), teacher, head.sparse_grad)
        if not chunked:
            terms = loss_sums(spec, cfg, batch, s, teacher)
        loss = sum(v / max(1, int(batch.student.valid[[i for i, e in enumerate(examples) if e.objective == o]].sum()))
                   for o, v in terms.items())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    # memory of one more step, measured in isolation
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        Path("/proc/self/clear_refs").write_text("5")
        base = _rss_kb("VmRSS")
        step()
        peak_mb = (_rss_kb("VmHWM") - base) / 1024
    from mule_cli.kernels import backend

    med = statistics.median(times)
    return {"model": args.model_label or args.model, "variant": args.variant, "step_s": med, "peak_mb": peak_mb,
            "impl": args.impl + (f"+{args.qa_child}" if args.qa_child else "") + ("+grid" if args.grid_child else ""),
            "teacher": args.teacher,
            "chunked": chunked, "fresh_targets": args.fresh,
            "backend": backend(device) if args.impl != "reference" else "reference",
            "device": device, "dtype": str(dtype), "batch": args.batch_size, "tokens": tokens,
            "response_positions": int(batch.student.valid.sum()), "tokens_per_s": tokens / med,
            "torch_threads": torch.get_num_threads()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--demos", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="Also write the results here.")
    ap.add_argument("--tiny-vocab", type=int, help="Benchmark a tiny random 2-layer Llama with this vocabulary size "
                    "instead of --model (the default model's tokenizer).")
    ap.add_argument("--quant-aware", metavar="GRID", help="Also time a fused step through weights fake-quantized "
                    "on GRID (q4_1, int4, int8), as `mule distill --quant-aware` runs every other step.")
    ap.add_argument("--on-grid", action="store_true", help="Also time a fused step that trains only the Q4_1 "
                    "grid's steps and offsets, as `mule distill` does on a model that ships on that grid.")
    ap.add_argument("--child", dest="impl", help=argparse.SUPPRESS)
    ap.add_argument("--grid-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--qa-child", help=argparse.SUPPRESS)
    ap.add_argument("--teacher", default="uncached", choices=("uncached", "cached", "floor"), help=argparse.SUPPRESS)
    ap.add_argument("--fresh", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--chunked", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--model-label", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.impl:
        print(json.dumps(child(args)))
        return
    argv = sys.argv[1:]
    if args.tiny_vocab:
        tiny = _tiny_model(args.tiny_vocab)
        atexit.register(shutil.rmtree, tiny, True)
        argv += ["--model", tiny, "--model-label", f"tiny-llama-v{args.tiny_vocab}"]
    variants = [("reference", "reference", ["--teacher", "uncached"]), ("a", "fused", ["--teacher", "uncached"]),
                ("b", "fused", ["--teacher", "cached", "--fresh"]), ("c", "fused", ["--teacher", "cached", "--chunked"]),
                ("c_first_epoch", "fused", ["--teacher", "cached", "--chunked", "--fresh"]),
                ("cached_logits", "fused", ["--teacher", "cached"]), ("floor", "fused", ["--teacher", "floor"])]
    if args.quant_aware:
        variants.append(("quant_aware", "fused",
                         ["--qa-child", args.quant_aware, "--teacher", "cached", "--chunked"]))
    if args.on_grid:
        variants.append(("on_grid", "fused", ["--grid-child", "--teacher", "cached", "--chunked"]))
    # A fixed malloc mmap threshold: freed large blocks go back to the OS, so the RSS high-water mark sees
    # each step's real peak (glibc's adaptive threshold would keep them on the heap after the warm-up step).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    rows = {}
    for name, impl, extra in variants:
        cmd = [sys.executable, __file__, "--child", impl, "--variant", name, *extra, *argv]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        if res.returncode != 0:
            sys.exit(f"{name} run failed:\n{res.stderr[-3000:]}")
        rows[name] = json.loads(res.stdout.strip().splitlines()[-1])
    _report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(list(rows.values()), indent=2) + "\n")


def _report(rows: dict) -> None:
    a, b, c, floor = rows["a"], rows["b"], rows["c"], rows["floor"]
    print(f"{a['model']} on {a['device']} ({a['dtype']}), batch {a['batch']} records, {a['tokens']} tokens "
          f"(student+teacher), {a['response_positions']} response positions, torch threads {a['torch_threads']}")
    print(f"{'variant':<14} {'impl':<12} {'backend':<11} {'step s':>8} {'tokens/s':>10} {'peak extra MB':>14}")
    for name, r in rows.items():
        print(f"{name:<14} {r['impl']:<12} {r['backend']:<11} {r['step_s']:>8.3f} {r['tokens_per_s']:>10.1f} "
              f"{r['peak_mb']:>14.1f}")

    def ratio(x, y, key="step_s"):
        return x[key] / max(y[key], 1e-9)
    print(f"fused/reference loss (teacher every step): time x{ratio(a, rows['reference']):.3f}")
    print(f"prefix KV cache: a/b (teacher every step) x{ratio(a, b):.3f}")
    print(f"a/c x{ratio(a, c):.3f} (target >= 2), c/floor x{ratio(c, floor):.3f} (target <= 1.5), "
          f"c first epoch/floor x{ratio(rows['c_first_epoch'], floor):.3f}")
    print(f"chunked loss: c/cached_logits time x{ratio(c, rows['cached_logits']):.3f}; "
          f"peak extra memory c/a x{ratio(c, a, 'peak_mb'):.3f} (target <= 0.25 at V = 128,256)")
    if "quant_aware" in rows:
        q = ratio(rows["quant_aware"], c)
        print(f"quant-aware/c: quantized step x{q:.3f}; a run alternates quantized and plain steps: "
              f"x{(1 + q) / 2:.3f} per step on average")
    if "on_grid" in rows:
        print(f"on-grid/c: step time x{ratio(rows['on_grid'], c):.3f} (target <= 1.3), "
              f"peak extra memory x{ratio(rows['on_grid'], c, 'peak_mb'):.3f}")


if __name__ == "__main__":
    main()
