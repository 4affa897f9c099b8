"""Fused top-K-union Smooth-L1 op (C++ CPU kernel) against the PyTorch reference and hand-computed values."""

from __future__ import annotations

import warnings

import pytest
import torch

from mule_cli.kernels import backend, build, reference_loss, topk_union_smooth_l1_loss
from mule_cli.losses.topk import topk_mask

TOL = {  # loss and gradient are both fp32-accumulated; differences come only from summation order
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-12, atol=1e-14),
    torch.bfloat16: dict(rtol=1e-5, atol=1e-6),
    torch.float16: dict(rtol=1e-5, atol=1e-6),
}


@pytest.fixture(scope="module", autouse=True)
def fused_available():
    if backend("cpu") != "fused-cpu":
        pytest.fail(f"the fused CPU extension did not build: {build._state.get('error')}")


def loss_and_grad(student, teacher, impl, **kw):
    s = student.detach().clone().requires_grad_(True)
    loss = topk_union_smooth_l1_loss(s, teacher, impl=impl, **kw)
    loss.backward()
    return loss.detach(), s.grad


def assert_same(student, teacher, **kw):
    lf, gf = loss_and_grad(student, teacher, "fused", **kw)
    lr, gr = loss_and_grad(student, teacher, "reference", **kw)
    tol = TOL[student.dtype]
    assert gf.dtype == student.dtype and gf.shape == student.shape
    torch.testing.assert_close(lf, lr, **tol)
    torch.testing.assert_close(gf.float(), gr.float(), **tol)
    return lf, gf


def hand_loss(s, t, k, beta):
    """Direct transcription of SPEC §4 for one row with Python floats (sorted() is stable)."""
    order = lambda x: sorted(range(len(x)), key=lambda j: -x[j])[:k]  # noqa: E731 - stable: lower index wins ties
    union = sorted(set(order(t)) | set(order(s)))
    total = 0.0
    for j in union:
        d = s[j] - t[j]
        total += 0.5 * d * d / beta if abs(d) < beta else abs(d) - 0.5 * beta
    return total / len(union), union


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_random_matches_reference(dtype, k):
    g = torch.Generator().manual_seed(k)
    s = (torch.randn(37, 300, generator=g) * 3).to(dtype)
    t = (torch.randn(37, 300, generator=g) * 3).to(dtype)
    assert_same(s, t, k=k, beta=1.0)
    assert_same(s, t, k=k, beta=0.25)


def test_matches_hand_computed_formula():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 12, generator=g, dtype=torch.float64) * 2
    t = torch.randn(4, 12, generator=g, dtype=torch.float64) * 2
    s[0, :6] = 1.5  # ties inside the student's top-K
    t[1, 3:9] = 0.75
    for impl in ("fused", "reference"):
        rows = [hand_loss(s[i].tolist(), t[i].tolist(), 3, 0.5)[0] for i in range(4)]
        expected = sum(rows) / 4
        got = topk_union_smooth_l1_loss(s, t, k=3, beta=0.5, impl=impl)
        assert got.item() == pytest.approx(expected, rel=1e-12)


def test_gradient_is_sparse_clamped_and_divided_by_union_and_rows():
    s = torch.tensor([[5.0, 4.0, 0.0, 0.0, -1.0, 0.2]])
    t = torch.tensor([[0.0, 0.0, 3.0, 2.5, 0.0, 0.0]])
    for impl in ("fused", "reference"):
        _, grad = loss_and_grad(s.expand(2, 6), t.expand(2, 6), impl, k=2, beta=2.0)
        # U = {0, 1, 2, 3}; d = 5, 4, -3, -2.5 -> clamp(d/2) = 1, 1, -1, -1; / |U| / rows
        expected = torch.tensor([0.125, 0.125, -0.125, -0.125, 0.0, 0.0]).expand(2, 6)
        torch.testing.assert_close(grad, expected)


def test_lowest_index_wins_ties():
    x = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0, 3.0]])
    assert topk_mask(x, 2).nonzero()[:, 1].tolist() == [1, 2]
    assert topk_mask(x, 3).nonzero()[:, 1].tolist() == [1, 2, 3]
    for impl in ("fused", "reference"):  # only the teacher's top-2 {1, 2} and student's {0, 1} count
        t = torch.tensor([[0.0, 3.0, 3.0, 3.0, 0.0, 3.0]])
        s = torch.tensor([[9.0, 9.0, 0.0, 0.0, 0.0, 0.0]])
        _, grad = loss_and_grad(s, t, impl, k=2)
        assert (grad != 0).nonzero()[:, 1].tolist() == [0, 1, 2]
    assert topk_mask(x, 5).nonzero()[:, 1].tolist() == [0, 1, 2, 3, 5]
    assert topk_mask(x, 4).nonzero()[:, 1].tolist() == [1, 2, 3, 5]


@pytest.mark.parametrize("levels", [2, 5, 16])
def test_tie_heavy_bfloat16(levels):
    g = torch.Generator().manual_seed(levels)
    s = (torch.randint(0, levels, (64, 257), generator=g) / 4).to(torch.bfloat16)
    t = (torch.randint(0, levels, (64, 257), generator=g) / 4).to(torch.bfloat16)
    s[0] = 1.0  # a constant row: the top-K is simply the first K indices
    for k in (1, 7, 20):
        assert_same(s, t, k=k)


def test_k_equals_v_and_k_too_large():
    s, t = torch.randn(5, 9), torch.randn(5, 9)
    loss, grad = assert_same(s, t, k=9)
    full = torch.nn.functional.smooth_l1_loss(s, t, reduction="mean")
    torch.testing.assert_close(loss, full)
    for impl in ("auto", "fused", "reference"):
        with pytest.raises(ValueError, match="exceeds the vocabulary size"):
            topk_union_smooth_l1_loss(s, t, k=10, impl=impl)
        with pytest.raises(ValueError, match="positive integer"):
            topk_union_smooth_l1_loss(s, t, k=0, impl=impl)
        with pytest.raises(ValueError, match="beta"):
            topk_union_smooth_l1_loss(s, t, k=2, beta=0.0, impl=impl)


def test_single_row():
    s, t = torch.randn(1, 1000), torch.randn(1, 1000)
    assert_same(s, t, k=20)
    assert_same(s[0:1], t[0:1], k=1000)


def test_coinciding_and_disjoint_top_sets():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(8, 200, generator=g)
    same = t + 0.01 * torch.randn(8, 200, generator=g)
    same[:, :] = t  # identical rows: U = T = S, loss 0, gradient 0
    loss, grad = assert_same(same, t, k=10)
    assert loss.item() == 0.0 and grad.abs().max().item() == 0.0
    shifted = t + 0.3  # same order, so U = T = S with |U| = K; d = 0.3 everywhere
    loss, grad = assert_same(shifted, t, k=10)
    assert loss.item() == pytest.approx(0.5 * 0.3**2, rel=1e-5)
    assert int((grad != 0).sum()) == 8 * 10
    disjoint_s = torch.zeros(8, 200)
    disjoint_s[:, :10] = 5.0
    disjoint_t = torch.zeros(8, 200)
    disjoint_t[:, 100:110] = 5.0
    loss, grad = assert_same(disjoint_s, disjoint_t, k=10)
    assert int((grad != 0).sum()) == 8 * 20  # |U| = 2K
    assert loss.item() == pytest.approx(5.0 - 0.5)


def test_masked_positions_are_skipped_and_never_read():
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(3, 6, 50, generator=g), torch.randn(3, 6, 50, generator=g)
    valid = torch.rand(3, 6, generator=g) > 0.4
    valid[0, 0], valid[0, 1] = True, False
    s[0, 1, 7] = float("nan")  # in a masked position: must not matter
    t[0, 1, 3] = float("inf")
    loss, grad = assert_same(s, t, k=4, valid=valid)
    assert torch.all(grad[~valid] == 0)
    expected = reference_loss(s[valid], t[valid], k=4)
    torch.testing.assert_close(loss, expected)


def test_all_masked_gives_zero_loss_and_zero_grad():
    s, t = torch.randn(2, 3, 40), torch.randn(2, 3, 40)
    valid = torch.zeros(2, 3, dtype=torch.bool)
    for impl in ("fused", "reference"):
        loss, grad = loss_and_grad(s, t, impl, k=4, valid=valid)
        assert loss.item() == 0.0 and torch.all(grad == 0)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["student", "teacher"])
@pytest.mark.parametrize("vocab,col", [(64, 33), (1000, 777)])  # short row / inside a 64-wide SIMD block
def test_nonfinite_valid_position_raises(impl, bad, where, vocab, col):
    s, t = torch.randn(2, 4, vocab), torch.randn(2, 4, vocab)
    (s if where == "student" else t)[1, 2, col] = bad
    with pytest.raises(ValueError, match="non-finite.*position 6"):
        topk_union_smooth_l1_loss(s, t, k=5, impl=impl)


def test_batched_and_non_contiguous_inputs():
    g = torch.Generator().manual_seed(7)
    s_full = torch.randn(3, 9, 120, generator=g)
    t_full = torch.randn(3, 9, 120, generator=g)
    assert_same(s_full, t_full, k=6)
    s_sliced, t_sliced = s_full[:, :-1], t_full[:, 1:]  # shifted logits: strided rows, no copy in the kernel
    assert not s_sliced.is_contiguous()
    assert_same(s_sliced, t_sliced, k=6)
    s_t = torch.randn(120, 20, generator=g).t()  # stride over V != 1
    t_t = torch.randn(120, 20, generator=g).t()
    assert_same(s_t, t_t, k=6)


def test_mixed_dtypes_and_bf16_gradient_dtype():
    s = torch.randn(4, 80).to(torch.bfloat16)
    t = torch.randn(4, 80)
    lf, gf = loss_and_grad(s, t.to(torch.bfloat16), "fused", k=5)
    assert lf.dtype == torch.float32 and gf.dtype == torch.bfloat16


def test_deterministic():
    s, t = torch.randn(64, 3000), torch.randn(64, 3000)
    a = loss_and_grad(s, t, "fused", k=20)
    b = loss_and_grad(s, t, "fused", k=20)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_fallback_warns_once_and_uses_reference(monkeypatch):
    s, t = torch.randn(6, 50), torch.randn(6, 50)

    def broken(with_cuda):
        raise OSError("simulated compiler failure")

    build.reset()
    monkeypatch.setattr(build, "_build", broken)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert backend("cpu") == "reference"
            first = topk_union_smooth_l1_loss(s, t, k=4)
            topk_union_smooth_l1_loss(s, t, k=4)
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(messages) == 1 and "simulated compiler failure" in messages[0]
        torch.testing.assert_close(first, reference_loss(s, t, k=4))
        with pytest.raises(build.ExtensionUnavailable, match="simulated"):
            topk_union_smooth_l1_loss(s, t, k=4, impl="fused")
    finally:
        monkeypatch.undo()
        build.reset()
    assert backend("cpu") == "fused-cpu"


def test_bad_impl_and_shapes():
    s = torch.randn(3, 10)
    with pytest.raises(ValueError, match="impl"):
        topk_union_smooth_l1_loss(s, s, impl="fast")
    with pytest.raises(ValueError, match="shape"):
        topk_union_smooth_l1_loss(s, torch.randn(3, 11))
    with pytest.raises(ValueError, match="valid mask shape"):
        topk_union_smooth_l1_loss(s, s, k=2, valid=torch.ones(4, dtype=torch.bool))
