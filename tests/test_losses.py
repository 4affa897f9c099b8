"""Losses against hand-computed examples, gradient directions, invariances and dtypes.

Expected values are written out with `math` from the definitions (not from the code under
test); the BiLD reference is a deliberately naive per-row loop over index pairs.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mule_cli.losses import (bild_loss, causal_shift, defaults, ga_loss,
                             label_mask, mean_sequence_logprob, nll_loss, npo_loss, sequence_lengths,
                             sequence_logprob, simnpo_loss, stable_topk_indices, topk_smooth_l1,
                             token_logprobs)

LN2, LN3 = math.log(2.0), math.log(3.0)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# ----------------------------------------------------------------------------- sequence


def test_token_logprobs_hand_example_and_ignore_index():
    # row 0: uniform over 3 tokens; row 1: probabilities 1/6, 2/6, 3/6.
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, LN2, LN3]],
                           [[0.0, LN2, LN3], [5.0, 5.0, 5.0]]])
    labels = torch.tensor([[1, 2], [0, -100]])
    lp = token_logprobs(logits, labels)
    assert lp.dtype == torch.float32 and lp.shape == (2, 2)
    expected = torch.tensor([[math.log(1 / 3), math.log(1 / 2)], [math.log(1 / 6), 0.0]])
    torch.testing.assert_close(lp, expected)
    mask = label_mask(labels)
    assert mask.tolist() == [[True, True], [True, False]]
    torch.testing.assert_close(sequence_logprob(lp, mask),
                               torch.tensor([math.log(1 / 6), math.log(1 / 6)]))
    torch.testing.assert_close(mean_sequence_logprob(lp, mask),
                               torch.tensor([math.log(1 / 6) / 2, math.log(1 / 6)]))
    torch.testing.assert_close(sequence_lengths(mask), torch.tensor([2.0, 1.0]))


def test_causal_shift_aligns_prediction_with_next_token():
    logits = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    ids = torch.tensor([[5, 6, 7, 8], [1, 2, 3, 4]])
    lg, lab = causal_shift(logits, ids)
    assert lg.shape == (2, 3, 3) and lab.tolist() == [[6, 7, 8], [2, 3, 4]]
    assert torch.equal(lg[:, 0], logits[:, 0])


def test_token_logprobs_rejects_misaligned_labels():
    with pytest.raises(ValueError):
        token_logprobs(torch.zeros(1, 3, 4), torch.zeros(1, 2, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_token_logprobs_half_inputs_accumulate_in_fp32(dtype):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 5, 1000, generator=g) * 4).to(dtype)
    labels = torch.randint(0, 1000, (2, 5), generator=g)
    lp = token_logprobs(logits, labels)
    assert lp.dtype == torch.float32
    ref = torch.log_softmax(logits.double(), -1).gather(-1, labels[..., None])[..., 0]
    torch.testing.assert_close(lp.double(), ref, atol=1e-5, rtol=1e-5)
    # a half-precision log-softmax is visibly worse: the fp32 path is not a no-op
    naive = torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0].double()
    assert (naive - ref).abs().max() > 10 * (lp.double() - ref).abs().max()


# ----------------------------------------------------------------------------- NLL / GA / GradDiff


def test_nll_and_ga_hand_example():
    token_lp = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -9.0, -9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert nll_loss(token_lp, mask).item() == pytest.approx(7 / 3)
    assert ga_loss(token_lp, mask).item() == pytest.approx(-7 / 3)


def test_nll_empty_mask_is_zero_and_differentiable():
    token_lp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss = nll_loss(token_lp, torch.zeros(1, 2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(token_lp.grad == 0)


def _sgd_step_nll(loss_fn, steps=1, lr=0.5):
    """NLL of a fixed 3-token target before and after `steps` SGD steps on `loss_fn`."""
    logits = torch.tensor([[[0.5, 0.0, -0.5], [0.0, 1.0, 0.0]]], requires_grad=True)
    labels = torch.tensor([[0, 1]])
    mask = label_mask(labels)
    before = nll_loss(token_logprobs(logits, labels), mask).item()
    opt = torch.optim.SGD([logits], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(token_logprobs(logits, labels), mask).backward()
        opt.step()
    return before, nll_loss(token_logprobs(logits, labels), mask).item()


def test_ga_step_increases_nll_and_sft_step_decreases_it():
    before, after = _sgd_step_nll(ga_loss)
    assert after > before
    before, after = _sgd_step_nll(nll_loss)
    assert after < before


# ----------------------------------------------------------------------------- NPO


def test_npo_at_reference_equals_two_over_beta_log2():
    lp = torch.tensor([-3.0, -10.0, -0.5])
    for beta in (0.1, 1.0, 2.5):
        assert npo_loss(lp, lp.clone(), beta=beta).item() == pytest.approx(2 / beta * LN2, rel=1e-6)
    assert npo_loss(lp, lp.clone()).item() == pytest.approx(2 / defaults.NPO_BETA * LN2, rel=1e-6)


def test_npo_hand_example_and_gradient_direction():
    logp = torch.tensor([-2.0, -1.0], requires_grad=True)
    ref = torch.tensor([-1.0, -1.0], requires_grad=True)
    beta = 0.5
    loss = npo_loss(logp, ref, beta=beta)
    expected = 0.5 * (-(2 / beta) * log_sigmoid(beta * 1.0) + -(2 / beta) * log_sigmoid(0.0))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # descending the loss lowers log πθ; the reference gets no gradient
    assert torch.all(logp.grad > 0)
    assert ref.grad is None or torch.all(ref.grad == 0)
    # gradient weight = σ(β·logratio)·2/2 per sequence (NPO's adaptive weight): exact values
    w = [1 / (1 + math.exp(-beta * (-1.0))), 0.5]
    torch.testing.assert_close(logp.grad, torch.tensor([2 * w[0] / 2, 2 * w[1] / 2]))


def test_npo_is_numerically_stable_at_extremes():
    logp = torch.tensor([-1e4, 1e4, 0.0])
    loss = npo_loss(logp, torch.zeros(3), beta=1.0)
    assert torch.isfinite(loss)
    # (2/β)·log(1+e^{1e4}) ≈ 2e4 for the middle term, ≈0 for the first, 2·ln2 for the last
    assert loss.item() == pytest.approx((0.0 + 2e4 + 2 * LN2) / 3, rel=1e-5)


# ----------------------------------------------------------------------------- SimNPO


def test_simnpo_hand_example():
    logp, lengths = torch.tensor([-6.0]), torch.tensor([3])
    beta = 2.5
    assert simnpo_loss(logp, lengths, beta=beta, gamma=0.0).item() == pytest.approx(
        -(2 / beta) * log_sigmoid(beta * 2.0), rel=1e-6)
    assert simnpo_loss(logp, lengths, beta=beta, gamma=1.0).item() == pytest.approx(
        -(2 / beta) * log_sigmoid(beta * 2.0 - 1.0), rel=1e-6)
    # defaults come from the defaults module (β=2.5, γ=0 — SimNPO TOFU recipe)
    assert simnpo_loss(logp, lengths).item() == pytest.approx(
        -(2 / defaults.SIMNPO_BETA) * log_sigmoid(defaults.SIMNPO_BETA * 2.0 - defaults.SIMNPO_GAMMA), rel=1e-6)


def test_simnpo_gamma_matches_authors_code_convention():
    """Unlearn-Simple computes -(2/β)·logσ(β·(NLL/|y| − γ_code)); ours uses γ = β·γ_code."""
    logp, lengths, beta, g_code = torch.tensor([-4.0, -12.0]), torch.tensor([2, 8]), 2.5, 0.3
    code = (-(2 / beta) * torch.nn.functional.logsigmoid(beta * (-logp / lengths - g_code))).mean()
    torch.testing.assert_close(simnpo_loss(logp, lengths, beta=beta, gamma=beta * g_code), code)


def test_simnpo_monotone_increasing_in_logp_and_length_normalised():
    grid = torch.linspace(-50, 0, 101, requires_grad=True)
    per = torch.stack([simnpo_loss(x[None], torch.tensor([5])) for x in grid])
    assert torch.all(per[1:] > per[:-1])  # lower log πθ → lower loss: descending forgets
    simnpo_loss(grid, torch.full((101,), 5)).backward()
    assert torch.all(grid.grad > 0)
    # same per-token log-prob, different lengths → same loss (length normalisation)
    a = simnpo_loss(torch.tensor([-4.0]), torch.tensor([2]))
    b = simnpo_loss(torch.tensor([-40.0]), torch.tensor([20]))
    torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- stable top-k


def test_stable_topk_breaks_ties_by_lower_index():
    x = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert stable_topk_indices(x, 2).tolist() == [[1, 2], [0, 1]]
    assert stable_topk_indices(x, 4).tolist() == [[1, 2, 4, 3], [0, 1, 2, 3]]
    g = torch.Generator().manual_seed(1)
    many_ties = torch.randint(0, 4, (200, 37), generator=g).float()
    want = torch.sort(many_ties, dim=-1, descending=True, stable=True).indices[:, :6]
    assert torch.equal(stable_topk_indices(many_ties, 6), want)


# ----------------------------------------------------------------------------- BiLD


def naive_bild_row(s, t, k, tau):
    """Per-row BiLD written from the paper: loops over index pairs, plain floats."""
    def top(x):
        return sorted(range(len(x)), key=lambda i: (-x[i], i))[:k]

    def kl_half(idx):
        pairs = list(itertools.combinations(range(len(idx)), 2))
        dt = [(t[idx[a]] - t[idx[b]]) / tau for a, b in pairs]
        ds = [(s[idx[a]] - s[idx[b]]) / tau for a, b in pairs]
        zt, zs = sum(math.exp(v) for v in dt), sum(math.exp(v) for v in ds)
        p = [math.exp(v) / zt for v in dt]
        q = [math.exp(v) / zs for v in ds]
        return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))

    return kl_half(top(t)) + kl_half(top(s))


def test_bild_hand_example():
    t = [3.0, 2.0, 0.0, -5.0]
    s = [0.0, 1.0, 2.0, -1.0]
    # teacher-led: I=(0,1,2): dt=(1,3,2), ds=(-1,-2,-1); student-led: I=(2,1,0): ds=(1,2,1), dt=(-2,-3,-1)
    p1 = [math.exp(v) for v in (1, 3, 2)]
    q1 = [math.exp(v) for v in (-1, -2, -1)]
    p2 = [math.exp(v) for v in (-2, -3, -1)]
    q2 = [math.exp(v) for v in (1, 2, 1)]

    def kl(p, q):
        p = [v / sum(p) for v in p]
        q = [v / sum(q) for v in q]
        return sum(a * math.log(a / b) for a, b in zip(p, q))

    expected = kl(p1, q1) + kl(p2, q2)
    assert naive_bild_row(s, t, 3, 1.0) == pytest.approx(expected)
    got = bild_loss(torch.tensor([s]), torch.tensor([t]), top_k=3, temperature=1.0)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_bild_matches_naive_reference_on_random_rows_with_defaults():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(6, 40, generator=g) * 3, torch.randn(6, 40, generator=g) * 3
    want = sum(naive_bild_row(s[i].tolist(), t[i].tolist(), defaults.BILD_TOP_K, defaults.BILD_TEMPERATURE)
               for i in range(6)) / 6
    assert bild_loss(s, t).item() == pytest.approx(want, rel=1e-4)


def test_bild_zero_iff_no_difference_and_shift_invariant():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(5, 30, generator=g) * 2
    s = torch.randn(5, 30, generator=g) * 2
    assert bild_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-6)
    # a per-row constant shift leaves every difference unchanged
    shift = torch.randn(5, 1, generator=g) * 10
    assert bild_loss(t + shift, t).item() == pytest.approx(0.0, abs=1e-6)
    base = bild_loss(s, t)
    assert base.item() > 1e-3
    torch.testing.assert_close(bild_loss(s + 7.0, t - 3.0), base, rtol=1e-5, atol=1e-6)


def test_bild_masked_rows_ignored_and_leading_dims_accepted():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(2, 3, 25, generator=g), torch.randn(2, 3, 25, generator=g)
    valid = torch.tensor([[True, False, True], [False, True, False]])
    garbage = s.clone()
    garbage[~valid] = 1e4 * torch.randn_like(garbage[~valid])
    want = bild_loss(s[valid], t[valid])
    torch.testing.assert_close(bild_loss(garbage, t, valid=valid), want)
    torch.testing.assert_close(bild_loss(s.reshape(6, 25), t.reshape(6, 25), valid=valid.reshape(6)), want)
    empty = bild_loss(s.requires_grad_(), t, valid=torch.zeros(2, 3, dtype=torch.bool))
    empty.backward()
    assert empty.item() == 0.0


def test_bild_gradcheck_float64_and_no_teacher_grad():
    g = torch.Generator().manual_seed(5)
    s = (torch.randn(3, 12, generator=g, dtype=torch.float64) * 2).requires_grad_()
    t = torch.randn(3, 12, generator=g, dtype=torch.float64) * 2
    valid = torch.tensor([True, False, True])
    assert torch.autograd.gradcheck(lambda x: bild_loss(x, t, valid=valid, top_k=4, temperature=1.5), (s,))
    tt = t.clone().requires_grad_()
    bild_loss(s, tt, top_k=4).backward()
    assert tt.grad is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_bild_half_inputs_accumulate_in_fp32(dtype):
    g = torch.Generator().manual_seed(6)
    s, t = (torch.randn(4, 64, generator=g) * 3).to(dtype), (torch.randn(4, 64, generator=g) * 3).to(dtype)
    got = bild_loss(s, t)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, bild_loss(s.float(), t.float()))


def test_bild_argument_checks():
    with pytest.raises(ValueError):
        bild_loss(torch.zeros(2, 5), torch.zeros(2, 5), top_k=1)
    with pytest.raises(ValueError):
        bild_loss(torch.zeros(2, 5), torch.zeros(2, 6))
    with pytest.raises(ValueError):
        bild_loss(torch.zeros(2, 5), torch.zeros(2, 5), valid=torch.ones(3, dtype=torch.bool))


# ----------------------------------------------------------------------------- DUET (teacher top-K Smooth-L1)


def duet(*args, **kw):
    return topk_smooth_l1(*args, union=False, **kw)


def test_union_switch_selects_the_kernel_loss_and_the_teacher_only_loss():
    """union=True is exactly the fused op's loss; union=False differs where the student's top-K adds
    entries the teacher's lacks, and equals it where both top-Ks coincide."""
    from mule_cli.kernels import topk_union_smooth_l1_loss

    g = torch.Generator().manual_seed(11)
    s, t = torch.randn(6, 40, generator=g) * 3, torch.randn(6, 40, generator=g) * 3
    assert topk_smooth_l1(s, t, k=5, impl="reference") == topk_union_smooth_l1_loss(s, t, k=5, impl="reference")
    assert duet(s, t, k=5) != topk_smooth_l1(s, t, k=5, impl="reference")
    same = t + 0.25  # same order: teacher and student top-K are the same set
    torch.testing.assert_close(duet(same, t, k=5), topk_smooth_l1(same, t, k=5, impl="reference"))


def test_duet_hand_example_with_tie_and_masked_row():
    # row 0: T={1,2}: d=(0.5, -2) → huber (0.125, 1.5) → 0.8125 (student's big logits at 0 and 3 ignored)
    # row 1: tie at 2.0 over indices 0,1,2 → T={0,1}: d=(-2,-2) → 1.5 (index 2, where s is large, ignored)
    # row 2: masked out, garbage
    s = torch.tensor([[5.0, 3.5, 0.0, 9.0], [0.0, 0.0, 10.0, 0.0], [1e6, -1e6, 3.0, 3.0]], requires_grad=True)
    t = torch.tensor([[1.0, 3.0, 2.0, 0.0], [2.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    valid = torch.tensor([True, True, False])
    loss = duet(s, t, valid=valid, k=2, beta=1.0)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx((0.8125 + 1.5) / 2)
    loss.backward()
    # ∂ℓ/∂s_j = clamp((s_j − t_j)/β, −1, 1)/K on T, divided by the 2 valid rows
    want = torch.tensor([[0.0, 0.5, -1.0, 0.0], [-1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]) / 2 / 2
    torch.testing.assert_close(s.grad, want)


def test_duet_equals_spec_formula_restricted_to_teacher_topk():
    g = torch.Generator().manual_seed(7)
    s, t = torch.randn(5, 50, generator=g) * 3, torch.randn(5, 50, generator=g) * 3
    beta, k = 0.7, 6
    rows = []
    for i in range(5):
        tt, ss = t[i].tolist(), s[i].tolist()
        top = sorted(range(50), key=lambda j: (-tt[j], j))[:k]
        hub = [0.5 * (ss[j] - tt[j]) ** 2 / beta if abs(ss[j] - tt[j]) < beta else abs(ss[j] - tt[j]) - 0.5 * beta
               for j in top]
        rows.append(sum(hub) / k)
    assert duet(s, t, k=k, beta=beta).item() == pytest.approx(sum(rows) / 5, rel=1e-5)
    # defaults: K=20, β=1 as SPEC §4
    assert (defaults.DISTILL_TOP_K, defaults.DISTILL_HUBER_BETA) == (20, 1.0)
    assert duet(s, t).item() == pytest.approx(
        duet(s, t, k=20, beta=1.0).item())


def test_duet_gradcheck_float64_and_zero_at_teacher():
    g = torch.Generator().manual_seed(8)
    s = (torch.randn(4, 15, generator=g, dtype=torch.float64) * 2).requires_grad_()
    t = torch.randn(4, 15, generator=g, dtype=torch.float64) * 2
    valid = torch.tensor([True, True, False, True])
    assert torch.autograd.gradcheck(lambda x: duet(x, t, valid=valid, k=5, beta=1.0), (s,))
    assert duet(t.clone(), t).item() == 0.0
    empty = duet(s, t, valid=torch.zeros(4, dtype=torch.bool))
    assert empty.item() == 0.0 and empty.requires_grad


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_duet_half_inputs_accumulate_in_fp32(dtype):
    g = torch.Generator().manual_seed(9)
    s, t = (torch.randn(4, 64, generator=g) * 3).to(dtype), (torch.randn(4, 64, generator=g) * 3).to(dtype)
    got = duet(s, t)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, duet(s.float(), t.float()))
