"""Quantization grids: round-trip error, idempotence, exact known values, partial groups, STE, models."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import make_tiny_llama
from mule_cli.errors import MuleError
from mule_cli.quant import (
    GRID_NAMES, GRIDS, fake_quant, half_step, quantizable_weights, quantize_dequantize, quantize_model_,
)

SHAPES = [(5, 70), (3, 32), (2, 300), (4, 1)]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _random(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 0.05).to(dtype)


def _same(a, b):
    """Bitwise-equal values, NaN equal to NaN (torch.equal has no equal_nan)."""
    return a.shape == b.shape and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


def _groups(n, size):
    """Slices of the last dim, written out independently of the module's padding trick."""
    size = size or n
    return [slice(a, min(a + size, n)) for a in range(0, n, size)]


def _reference_bound(x, grid, dtype):
    """Per-element bound on |x - dequant(x)| and the expected half step, from per-group stats.

    Real arithmetic gives |x - grid point| <= step/2 (round to nearest; q4_1's clamp at 15 only bites
    for x = max, which is then at most step/2 below the top point). On top of that:
    - float32 arithmetic: x/s or (x-mn)*id may round across a .5 and q*s is rounded; a few fp32 ulps
      of the group's largest magnitude (2**-22 * amax) covers both.
    - q4_1 stores d and mn in fp16 (unit roundoff 2**-11): dequant = m16 + q*d16 differs from mn + q*d
      by at most |mn - m16| + 15|d - d16| <= 2**-11 * (|mn| + 15 d), plus 16 half-spacings of fp16
      subnormals (2**-25) for tiny values.
    - a reduced output dtype rounds the fp32 result once more: unit roundoff u * |result|, and
      |result| <= |x| + the error above.
    """
    g = GRIDS[grid]
    bound, half = torch.empty_like(x), torch.empty_like(x)
    for row in range(x.shape[0]):
        for sl in _groups(x.shape[-1], g.group):
            v = x[row, sl]
            amax = v.abs().max()
            if g.symmetric:
                step = amax / g.qmax
                err = step / 2
            else:
                mn, step = v.min(), (v.max() - v.min()) / g.qmax
                err = step / 2 + 2.0**-11 * (mn.abs() + 15 * step) + 16 * 2.0**-25
            err = err + 2.0**-22 * amax
            u = torch.finfo(dtype).eps / 2 if dtype != torch.float32 else 0.0
            bound[row, sl] = err + u * (v.abs() + err)
            half[row, sl] = step / 2
    return bound, half


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("grid", GRID_NAMES)
def test_round_trip_within_half_step(grid, shape, dtype):
    w = _random(shape, dtype)
    q = quantize_dequantize(w, grid)
    assert q.dtype == dtype and q.shape == w.shape
    x = w.float()
    bound, half = _reference_bound(x, grid, dtype)
    assert ((q.float() - x).abs() <= bound).all()
    torch.testing.assert_close(half_step(w, grid), half, rtol=1e-6, atol=0)
    if shape != (4, 1) and grid != "int8":  # a real grid: most values actually move
        assert (q.float() != x).float().mean() > 0.5


@pytest.mark.parametrize("shape", [(5, 70), (2, 300), (3, 33)], ids=str)
def test_q4_1_matches_a_per_group_reference(shape):
    """Group by group, exactly the arithmetic of llama.cpp's quantize_row_q4_1_ref."""
    x = _random(shape, torch.float32, seed=1)
    want = torch.empty_like(x)
    for row in range(shape[0]):
        for sl in _groups(shape[1], 32):
            v = x[row, sl]
            mn, mx = v.min(), v.max()
            d = (mx - mn) / 15
            inv = 1.0 / d if d != 0 else torch.tensor(0.0)
            q = torch.clamp(torch.floor((v - mn) * inv + 0.5), max=15)
            want[row, sl] = mn.half().float() + q * d.half().float()
    assert torch.equal(quantize_dequantize(x, "q4_1"), want)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("grid", GRID_NAMES)
def test_idempotent(grid, dtype):
    for seed, shape in enumerate(SHAPES + [(64, 128)]):
        q = quantize_dequantize(_random(shape, dtype, seed), grid)
        assert torch.equal(quantize_dequantize(q, grid), q)


def test_q4_1_known_values():
    # 2, 2.5, ..., 17.5: mn = 2, d = 15.5/15 = 1.0333.., stored as fp16 1 + 34/1024 = 1.033203125.
    x = 2 + 0.5 * torch.arange(32, dtype=torch.float32)
    q = quantize_dequantize(x[None], "q4_1")[0]
    d16 = 1 + 34 / 1024
    assert q[0] == 2.0  # the min is grid point 0
    assert q[31] == 2 + 15 * d16  # the max is grid point 15 (17.498..., not 17.5: fp16 d, as in GGUF)
    assert q[15] == 2 + 7 * d16  # 9.5: (9.5 - 2) / 1.0333 = 7.26 -> 7
    assert half_step(x, "q4_1")[0] == pytest.approx(15.5 / 15 / 2)


def test_q4_1_rounds_half_up_and_constant_group_gives_fp16_min():
    x = torch.zeros(64)
    x[1], x[2], x[3] = 15.0, 0.5, 2.5  # first group: mn = 0, d = 1 exactly
    x[32:] = 0.1  # second group constant: d = 0, dequant = fp16(0.1)
    q = quantize_dequantize(x, "q4_1")
    assert q[2] == 1.0 and q[3] == 3.0  # round half up, not half to even
    assert (q[32:] == torch.tensor(0.1).half().float()).all()
    assert (half_step(x, "q4_1")[32:] == 0).all()


def test_int8_known_row_and_per_row_scale():
    x = torch.tensor([[127.0, -3.5, 2.5, 0.4, -127.0], [0.0, 254.0, 100.0, -1.0, 3.0]])
    # row 0: s = 1; row 1: s = 2 (own scale). torch.round is half to even.
    want = torch.tensor([[127.0, -4.0, 2.0, 0.0, -127.0], [0.0, 254.0, 100.0, 0.0, 4.0]])
    assert torch.equal(quantize_dequantize(x, "int8"), want)
    assert torch.equal(half_step(x, "int8"), torch.tensor([[0.5] * 5, [1.0] * 5]))


def test_int4_known_group_and_partial_last_group():
    x = torch.zeros(1, 130)
    x[0, :4] = torch.tensor([7.0, -3.5, 0.5, 1.49])  # first 128: s = 1
    x[0, 128:] = torch.tensor([70.0, 14.0])  # partial group of 2: s = 10
    q = quantize_dequantize(x, "int4")
    assert q[0, :4].tolist() == [7.0, -4.0, 0.0, 1.0]
    assert q[0, 128:].tolist() == [70.0, 10.0]
    assert (q[0, 4:128] == 0).all()
    assert torch.equal(quantize_dequantize(torch.zeros(3, 5), "int4"), torch.zeros(3, 5))


@pytest.mark.parametrize("grid", ["q4_1", "int4"])
def test_partial_last_group_has_its_own_scale(grid):
    size = GRIDS[grid].group
    row = _random((1, size), torch.float32, seed=3)
    longer = torch.cat([row, torch.tensor([[1000.0]])], 1)  # one huge value in a group of its own
    q = quantize_dequantize(longer, grid)
    assert torch.equal(q[:, :size], quantize_dequantize(row, grid))
    assert q[0, size] == 1000.0


def test_groups_run_along_the_last_dim_of_any_rank():
    w = _random((2, 3, 70), torch.float32, seed=4)
    for grid in GRID_NAMES:
        flat = quantize_dequantize(w.reshape(6, 70), grid).reshape(2, 3, 70)
        assert torch.equal(quantize_dequantize(w, grid), flat)
        assert torch.equal(quantize_dequantize(w[0, 0], grid), flat[0, 0])  # 1-D works too


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("grid", GRID_NAMES)
def test_the_whole_group_fast_path_equals_the_general_one(grid, dtype):
    """quantize_dequantize's fast path (whole groups, finite scales) gives _snap's values bit for bit, and
    declines what only the general path handles (partial groups, non-finite groups, fp16 overflow)."""
    from mule_cli.quant import _dequantized_whole_groups, _snap, get_grid

    g = get_grid(grid)
    for seed, shape in enumerate([(3, 256), (2, 4, 128), (64, 128), (1, 384)]):
        w = _random(shape, dtype, seed)
        w.view(-1)[:128] = 0.25  # a constant (q4_1: zero-step) group
        fast = _dequantized_whole_groups(w, g)
        assert fast is not None and torch.equal(fast, _snap(w, grid)[0])
    w = _random((2, 256), torch.float32)
    assert _dequantized_whole_groups(w[:, :250], g) is None or grid == "int8"
    for bad in (float("nan"), float("inf"), 1e6):
        worse = w.clone()
        worse[0, 3] = bad
        if bad == 1e6 and g.symmetric:  # only q4_1 stores its scale in fp16
            continue
        assert _dequantized_whole_groups(worse, g) is None
        torch.testing.assert_close(quantize_dequantize(worse, grid), _snap(worse, grid)[0], rtol=0, atol=0,
                                   equal_nan=True)
    assert _dequantized_whole_groups(torch.tensor(1.5), g) is None


@pytest.mark.parametrize("grid", GRID_NAMES)
def test_fake_quant_is_a_straight_through_estimator(grid):
    w = _random((4, 70), torch.float32, seed=5).requires_grad_()
    out = fake_quant(w, grid)
    assert torch.equal(out.detach(), quantize_dequantize(w, grid))
    out.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_quantize_model_keeps_ties_and_norms():
    model = make_tiny_llama(vocab_size=64)
    embed = model.model.embed_tokens.weight
    assert model.lm_head.weight is embed
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = [n for n, _ in quantizable_weights(model)]
    assert len(names) == 2 * 7 + 1  # q k v o gate up down per layer + the (tied) embedding, once
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names
    assert quantize_model_(model, "q4_1") == 15
    assert model.lm_head.weight is embed and model.model.embed_tokens.weight is embed
    for n, p in model.named_parameters():
        if p.ndim == 2:
            assert torch.equal(p, quantize_dequantize(before[n], "q4_1")), n
            assert not torch.equal(p, before[n]), n
        else:
            assert torch.equal(p, before[n]), n  # RMSNorm weights stay in full precision


def test_untied_lm_head_is_its_own_weight():
    model = make_tiny_llama(vocab_size=64, tie_word_embeddings=False)
    assert quantize_model_(model, "int8") == 16


def test_weights_sharing_storage_are_quantized_once():
    """A tie made of two Parameter objects over one storage (as some loaders do) counts once."""
    model = make_tiny_llama(vocab_size=64, tie_word_embeddings=False)
    embed = model.model.embed_tokens.weight
    model.lm_head.weight = torch.nn.Parameter(embed.data)
    want = quantize_dequantize(embed, "int4")
    assert quantize_model_(model, "int4") == 15
    assert torch.equal(embed, want) and torch.equal(model.lm_head.weight, want)


@pytest.mark.parametrize("grid", GRID_NAMES)
def test_quantize_model_twice_is_a_no_op(grid):
    model = make_tiny_llama(vocab_size=64, seed=1).to(torch.bfloat16)
    quantize_model_(model, grid)
    once = {n: p.detach().clone() for n, p in model.named_parameters()}
    quantize_model_(model, grid)
    for n, p in model.named_parameters():
        assert p.dtype == torch.bfloat16 and torch.equal(p, once[n]), n


def test_unknown_grid_names_the_known_ones():
    model = make_tiny_llama(vocab_size=64)
    before = model.model.embed_tokens.weight.detach().clone()
    for call in (lambda: quantize_dequantize(torch.ones(3), "q5_k"), lambda: quantize_model_(model, "q5_k")):
        with pytest.raises(MuleError, match="q5_k") as err:
            call()
        assert all(name in err.value.message for name in GRID_NAMES)
    assert torch.equal(model.model.embed_tokens.weight, before)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("grid", ["q4_1", "int4"])
def test_non_finite_group_is_left_unchanged(grid, bad):
    size = GRIDS[grid].group
    w = _random((2, 2 * size), torch.float32, seed=6)
    w[0, 3] = bad
    q, half = quantize_dequantize(w, grid), half_step(w, grid)
    assert _same(q[0, :size], w[0, :size])  # the poisoned group is untouched
    assert half[0, :size].isnan().all() and half[0, size:].isfinite().all()
    assert torch.equal(q[0, size:], quantize_dequantize(w[0, size:], grid))  # its neighbours are not
    assert torch.equal(q[1], quantize_dequantize(w[1], grid))


def test_non_finite_int8_row_and_fp16_overflow_are_left_unchanged():
    w = torch.tensor([[1.0, math.nan, 3.0], [1.0, 2.0, 3.0]])
    q = quantize_dequantize(w, "int8")
    assert _same(q[0], w[0]) and torch.isfinite(q[1]).all()
    big = torch.tensor([[-1e5, 5.0, 1e5]])  # q4_1's fp16 min overflows to -inf: no usable grid
    assert torch.equal(quantize_dequantize(big, "q4_1"), big)
    assert half_step(big, "q4_1").isnan().all()
