#!/usr/bin/env python
"""Benchmark the top-K-union Smooth-L1 loss: reference vs torch.compile(reference) vs fused kernel.

Times forward+backward (median of --repeats after --warmup runs) and measures peak EXTRA memory of one
forward+backward, over a grid of N (positions), V (vocabulary) and K, on CPU and/or CUDA.

How memory is measured (honestly, per implementation, in isolation):
  every (impl, config) runs in its own child process, so allocator caches, compile artefacts and other
  implementations never leak into the number.
  * CPU: after inputs exist and the warm-up/timed runs are done (and the gradient is dropped), the child
    resets the kernel's resident-set high-water mark (`echo 5 > /proc/self/clear_refs`), reads VmRSS as
    the baseline, runs one forward+backward, and reports VmHWM - baseline: the peak physical memory the
    step needed beyond its inputs, including the returned [N, V] gradient. Large tensors are mmapped by
    glibc and returned on free, so freed temporaries do not hide in the baseline. Linux only.
  * CUDA: torch.cuda.max_memory_allocated() - memory_allocated() around one forward+backward.
CUDA rows also report achieved bandwidth: bytes = read student + teacher once + write the gradient
once (3 * N * V * itemsize) divided by the fwd+bwd time, against the device's peak (--peak-gbps, or a
table of known GPUs).

Examples:
  python benchmarks/bench_loss.py --quick
  python benchmarks/bench_loss.py --device cpu --n 4096 --v 49152 --k 20 --dtype float32 --threads 2 \
      --json bench.json --plot bench.png
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

IMPLS = ("reference", "compiled", "fused")
PEAK_GBPS = {  # HBM peak by device-name fragment (GB/s)
    "H200": 4800, "H100 SXM": 3350, "H100 80GB HBM3": 3350, "H100 PCIe": 2000, "H100": 3350,
    "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864, "L4": 300, "A10G": 600,
    "RTX 4090": 1008, "RTX 3090": 936, "V100": 900, "T4": 320,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__[__doc__.index("Examples:"):])
    p.add_argument("--quick", action="store_true", help="small grid (N=512, V=32000, K=20) for a smoke run")
    p.add_argument("--n", type=int, nargs="+", help="positions (default CPU: 1024 4096; CUDA: 4096 16384)")
    p.add_argument("--v", type=int, nargs="+", default=[32000, 49152, 128256], help="vocabulary sizes")
    p.add_argument("--k", type=int, nargs="+", default=[8, 20, 64], help="top-K sizes")
    p.add_argument("--device", nargs="+", choices=["cpu", "cuda"], help="default: cpu, plus cuda when available")
    p.add_argument("--dtype", nargs="+", default=None, help="float32/bfloat16/float16 (default: CPU float32, CUDA bfloat16)")
    p.add_argument("--impl", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for CPU runs")
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--timeout", type=int, default=900, help="seconds per (impl, config) child before n/a")
    p.add_argument("--peak-gbps", type=float, default=None, help="device peak memory bandwidth for CUDA rows")
    p.add_argument("--json", type=Path, help="write the result rows here")
    p.add_argument("--plot", type=Path, help="write a PNG bar chart here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------- child side
def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_child(cfg: dict) -> dict:
    import gc

    import torch

    from mule_cli.kernels import backend, reference_loss, topk_union_smooth_l1_loss

    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    device, dtype = torch.device(cfg["device"]), getattr(torch, cfg["dtype"])
    n, v, k, beta, impl = cfg["n"], cfg["v"], cfg["k"], cfg["beta"], cfg["impl"]
    gen = torch.Generator(device=device).manual_seed(0)
    student = (torch.randn(n, v, generator=gen, device=device) * 3).to(dtype).requires_grad_(True)
    teacher = (torch.randn(n, v, generator=gen, device=device) * 3).to(dtype)
    if impl == "fused":
        if not backend(device).startswith("fused"):
            return {"error": f"fused backend unavailable on {device}"}
        fn = lambda s, t: topk_union_smooth_l1_loss(s, t, k=k, beta=beta, impl="fused")  # noqa: E731
    elif impl == "compiled":
        compiled = torch.compile(reference_loss)
        fn = lambda s, t: compiled(s, t, k, beta)  # noqa: E731
    else:
        fn = lambda s, t: reference_loss(s, t, k, beta)  # noqa: E731
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        loss = fn(student, teacher)
        loss.backward()
        student.grad = None
        return loss

    for _ in range(cfg["warmup"]):
        step()
    times = []
    for _ in range(cfg["repeats"]):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        loss = fn(student, teacher)
        loss.backward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = rss_kb("VmRSS")
        loss = fn(student, teacher)
        loss.backward()
        peak = (rss_kb("VmHWM") - base) * 1024
    return {"fwd_bwd_ms": statistics.median(times), "peak_mem_mb": peak / 2**20, "loss": float(loss)}


# ---------------------------------------------------------------------------------------- parent side
def peak_gbps(args) -> float | None:
    if args.peak_gbps:
        return args.peak_gbps
    import torch

    name = torch.cuda.get_device_name()
    for fragment, gbps in PEAK_GBPS.items():
        if fragment in name:
            return float(gbps)
    return None


def configs(args):
    import torch

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda requested but not available: skipped", file=sys.stderr)
            continue
        ns = [512] if args.quick else (args.n or ([1024, 4096] if device == "cpu" else [4096, 16384]))
        vs = [32000] if args.quick and args.v == [32000, 49152, 128256] else args.v
        ks = [20] if args.quick and args.k == [8, 20, 64] else args.k
        dtypes = args.dtype or (["float32"] if device == "cpu" else ["bfloat16"])
        for dtype in dtypes:
            for n in ns:
                for v in vs:
                    for k in ks:
                        yield dict(device=device, dtype=dtype, n=n, v=v, k=k)


def run_one(args, cfg: dict, impl: str) -> dict:
    child = dict(cfg, impl=impl, beta=args.beta, repeats=args.repeats, warmup=args.warmup, threads=args.threads)
    cmd = [sys.executable, __file__, "--child", json.dumps(child)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout}s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:200]}"}
    return json.loads(lines[-1])


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        try:
            print(json.dumps(run_child(json.loads(args.child))))
        except Exception as exc:  # noqa: BLE001 - reported as n/a by the parent
            print(json.dumps({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}))
        return 0

    rows = []
    header = f"{'device':6} {'dtype':8} {'N':>6} {'V':>7} {'K':>3} {'impl':9} {'fwd+bwd ms':>11} {'speed-up':>8} {'peak MB':>9} {'mem ratio':>9} {'GB/s':>7} {'%peak':>6}"
    print(header)
    print("-" * len(header))
    for cfg in configs(args):
        ref = None
        for impl in args.impl:
            res = run_one(args, cfg, impl)
            row = dict(impl=impl, **cfg, fwd_bwd_ms=res.get("fwd_bwd_ms"), peak_mem_mb=res.get("peak_mem_mb"),
                       threads=args.threads)
            if "error" in res:
                row["error"] = res["error"]
            if impl == "reference" and row["fwd_bwd_ms"] is not None:
                ref = row
            speed = mem = gbps = pct = None
            if ref is not None and row["fwd_bwd_ms"]:
                speed = ref["fwd_bwd_ms"] / row["fwd_bwd_ms"]
                mem = row["peak_mem_mb"] / ref["peak_mem_mb"] if ref["peak_mem_mb"] else None
                row["speedup_vs_reference"], row["mem_vs_reference"] = speed, mem
            if cfg["device"] == "cuda" and row["fwd_bwd_ms"]:
                import torch

                itemsize = torch.empty((), dtype=getattr(torch, cfg["dtype"])).element_size()
                gbps = 3 * cfg["n"] * cfg["v"] * itemsize / (row["fwd_bwd_ms"] / 1000) / 1e9
                peak = peak_gbps(args)
                pct = 100 * gbps / peak if peak else None
                row["achieved_gbps"], row["peak_gbps"] = gbps, peak
            rows.append(row)
            print(f"{cfg['device']:6} {cfg['dtype']:8} {cfg['n']:>6} {cfg['v']:>7} {cfg['k']:>3} {impl:9} "
                  f"{fmt(row['fwd_bwd_ms'], '11.1f')} {fmt(speed, '7.2f') + ('x' if speed else ''):>8} "
                  f"{fmt(row['peak_mem_mb'], '9.0f')} {fmt(mem, '9.2f')} {fmt(gbps, '7.0f')} {fmt(pct, '6.1f')}"
                  + (f"   ({row['error']})" if "error" in row else ""), flush=True)
    if args.json:
        from mule_cli.atomic import write_json

        write_json(args.json, rows)
    if args.plot:
        plot(rows, args.plot)
    return 0


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({(r["device"], r["dtype"], r["n"], r["v"], r["k"]) for r in rows}, key=str)
    impls = [i for i in IMPLS if any(r["impl"] == i for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.2 * len(labels) + 4), 4.5))
    width = 0.8 / max(1, len(impls))
    for a, (field, title) in enumerate([("fwd_bwd_ms", "forward+backward (ms, log)"), ("peak_mem_mb", "peak extra memory (MB)")]):
        ax = axes[a]
        for i, impl in enumerate(impls):
            ys = []
            for lab in labels:
                match = [r for r in rows if (r["device"], r["dtype"], r["n"], r["v"], r["k"]) == lab and r["impl"] == impl]
                ys.append(match[0][field] if match and match[0][field] else 0)
            ax.bar([x + i * width for x in range(len(labels))], ys, width, label=impl)
        ax.set_xticks([x + width * (len(impls) - 1) / 2 for x in range(len(labels))])
        ax.set_xticklabels([f"{d} {t}\nN={n} V={v}\nK={k}" for d, t, n, v, k in labels], fontsize=7)
        ax.set_title(title)
        if field == "fwd_bwd_ms":
            ax.set_yscale("log")
            positive = [r[field] for r in rows if r.get(field)]
            if positive:
                ax.set_ylim(bottom=min(positive) / 3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
