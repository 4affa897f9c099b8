"""The fused op on CUDA against the reference (runs only where torch sees a GPU and the CUDA kernel built)."""

from __future__ import annotations

import pytest
import torch

from mule_cli.kernels import backend, topk_union_smooth_l1_loss

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device visible to torch: the CUDA kernel cannot run here"
)


@pytest.fixture(scope="module", autouse=True)
def cuda_kernel():
    if backend("cuda") != "fused-cuda":
        pytest.fail("torch sees a GPU but the CUDA kernel did not build")


def both(student, teacher, **kw):
    out = []
    for impl in ("fused", "reference"):
        s = student.detach().clone().requires_grad_(True)
        loss = topk_union_smooth_l1_loss(s, teacher, impl=impl, **kw)
        loss.backward()
        out.append((loss.detach(), s.grad))
    (lf, gf), (lr, gr) = out
    torch.testing.assert_close(lf, lr, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gf.float(), gr.float(), rtol=1e-5, atol=1e-6)
    return lf, gf


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("k", [1, 20, 64, 256])
@pytest.mark.parametrize("v", [300, 32000])
def test_random(dtype, k, v):
    g = torch.Generator(device="cuda").manual_seed(k + v)
    s = (torch.randn(33, v, generator=g, device="cuda") * 3).to(dtype)
    t = (torch.randn(33, v, generator=g, device="cuda") * 3).to(dtype)
    both(s, t, k=k)


@pytest.mark.parametrize("levels", [2, 16, 1000])
def test_tie_heavy_bfloat16(levels):  # levels=2: almost every value tied
    g = torch.Generator(device="cuda").manual_seed(levels)
    s = (torch.randint(0, levels, (16, 20000), generator=g, device="cuda") / 4).to(torch.bfloat16)
    t = (torch.randint(0, levels, (16, 20000), generator=g, device="cuda") / 4).to(torch.bfloat16)
    both(s, t, k=20)


def test_masks_strides_and_nonfinite():
    g = torch.Generator(device="cuda").manual_seed(1)
    s = torch.randn(3, 7, 5000, generator=g, device="cuda")
    t = torch.randn(3, 7, 5000, generator=g, device="cuda")
    valid = torch.rand(3, 7, generator=g, device="cuda") > 0.3
    valid[0, 0], valid[0, 1] = True, False
    s[0, 1, 9] = float("nan")
    both(s, t, k=20, valid=valid)
    both(s[:, 1:], t[:, :-1], k=20, valid=valid[:, 1:])
    with pytest.raises(ValueError, match="position 0"):
        bad = s.clone()
        bad[0, 0, 4] = float("inf")
        topk_union_smooth_l1_loss(bad, t, k=20, impl="fused")


def test_opcheck_cuda():
    from mule_cli.kernels.op import topk_union_smooth_l1

    s = torch.randn(2, 3, 50, device="cuda", requires_grad=True)
    t = torch.randn(2, 3, 50, device="cuda")
    valid = torch.ones(2, 3, dtype=torch.bool, device="cuda")
    torch.library.opcheck(topk_union_smooth_l1, (s, t, valid, 5, 1.0))
