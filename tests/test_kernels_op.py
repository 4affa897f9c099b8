"""The custom op's registration (opcheck, gradcheck) and the CUDA source compiling with nvcc."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from mule_cli.kernels import backend, reference_loss, topk_union_smooth_l1_loss
from mule_cli.kernels.build import csrc_dir
from mule_cli.kernels.op import topk_union_smooth_l1


def separated(shape, seed, dtype=torch.float64):
    """Random logits whose values are far from ties and from the Huber kink, so finite differences are
    valid (top-K selection and |d| = beta are the only non-smooth points)."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for size in shape:
        n *= size
    values = torch.randperm(n, generator=g).to(dtype).reshape(shape) * 0.37 / n * 7
    return values


@pytest.fixture(scope="module", autouse=True)
def fused_available():
    assert backend("cpu") == "fused-cpu"


def op_inputs(dtype, seed=0, k=3):
    s = torch.randn(2, 3, 17, dtype=dtype, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    t = torch.randn(2, 3, 17, dtype=dtype, generator=torch.Generator().manual_seed(seed + 1))
    valid = torch.tensor([[True, False, True], [True, True, True]])
    return (s, t, valid, k, 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_opcheck(dtype):
    torch.library.opcheck(topk_union_smooth_l1, op_inputs(dtype))
    torch.library.opcheck(topk_union_smooth_l1, op_inputs(dtype, seed=4, k=17))


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_gradcheck_float64(impl):
    # The CPU kernel is templated on float64 with float64 accumulation, so the fused op itself is
    # gradchecked (not only the reference).
    s = separated((2, 3, 11), seed=1).requires_grad_(True)
    t = separated((2, 3, 11), seed=2)
    valid = torch.tensor([[True, True, False], [True, True, True]])
    fn = lambda x: topk_union_smooth_l1_loss(x, t, k=3, beta=0.5, valid=valid, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (s,), eps=1e-6, atol=1e-8)


def test_compiles_under_torch_compile_fullgraph():
    s = torch.randn(4, 64, requires_grad=True)
    t = torch.randn(4, 64)
    fn = torch.compile(lambda a, b: topk_union_smooth_l1_loss(a, b, k=4, impl="fused"), fullgraph=True,
                       backend="aot_eager")
    loss = fn(s, t)
    loss.backward()
    s2 = s.detach().clone().requires_grad_(True)
    ref = reference_loss(s2, t, k=4)
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(s.grad, s2.grad)


def test_cuda_source_compiles_with_nvcc(tmp_path: Path):
    nvcc = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if Path("/usr/local/bin/nvcc").exists() else None)
    if nvcc is None:
        pytest.skip("nvcc not found on PATH: cannot check that csrc/topk_union_loss.cu compiles")
    src = csrc_dir() / "topk_union_loss.cu"
    for arch in ("sm_80", "sm_90"):
        out = tmp_path / f"topk_union_{arch}.o"
        proc = subprocess.run(
            [nvcc, "-c", str(src), "-o", str(out), f"-arch={arch}", "-O3", "-std=c++17", "-I", str(csrc_dir())],
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, f"nvcc failed for {arch}:\n{proc.stderr[-4000:]}"
        assert out.stat().st_size > 0
