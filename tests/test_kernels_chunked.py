"""The hidden-state (chunked, no full logits) variant equals the logits-level loss, value and gradients."""

from __future__ import annotations

import pytest
import torch

from mule_cli.kernels import topk_union_smooth_l1_loss
from mule_cli.kernels.chunked import topk_union_smooth_l1_from_hidden


def test_from_hidden_matches_logits_loss():
    g = torch.Generator().manual_seed(0)
    n, h, v = 37, 16, 500
    hs = torch.randn(n, h, generator=g, dtype=torch.float64, requires_grad=True)
    ws = torch.randn(v, h, generator=g, dtype=torch.float64, requires_grad=True)
    ht = torch.randn(n, h, generator=g, dtype=torch.float64)
    wt = torch.randn(v, h, generator=g, dtype=torch.float64)
    valid = torch.rand(n, generator=g) > 0.2
    loss = topk_union_smooth_l1_from_hidden(hs, ws, ht, wt, k=7, beta=0.5, valid=valid, chunk_size=8)
    gh, gw = torch.autograd.grad(loss, (hs, ws))
    ref = topk_union_smooth_l1_loss(hs @ ws.t(), ht @ wt.t(), k=7, beta=0.5, valid=valid, impl="reference")
    rh, rw = torch.autograd.grad(ref, (hs, ws))
    torch.testing.assert_close(loss, ref.float(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(gh, rh, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-7)


def test_no_vocabulary_sized_buffer_waits_for_backward():
    """Each call used to keep a dense fp32 [V, H] grad_W from forward to backward (one per objective per
    step); now only the rows' (index, value) pairs and [N, H] tensors are saved."""
    g = torch.Generator().manual_seed(1)
    n, h, v = 12, 8, 300
    hs = torch.randn(n, h, generator=g, requires_grad=True)
    ws = torch.randn(v, h, generator=g, requires_grad=True)
    loss = topk_union_smooth_l1_from_hidden(hs, ws, torch.randn(n, h, generator=g), torch.randn(v, h, generator=g),
                                            k=5, chunk_size=5)
    nodes, saved = [loss.grad_fn], []
    while nodes:
        node = nodes.pop()
        saved += getattr(node, "saved_tensors", ())
        nodes += [f for f, _ in node.next_functions if f is not None]
    assert saved and all(v not in t.shape for t in saved)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_tied_bf16_weight_accumulates_both_gradients(sparse):
    """A tied embedding/lm_head in bf16: the op's gradient arrives in the weight's dtype and adds to the
    embedding's, as the logits path's does; sparse_weight_grad sends only the touched rows (which autograd
    adds into the embedding's dense gradient, so .grad stays dense)."""
    g = torch.Generator().manual_seed(2)
    n, h, v = 20, 16, 400
    w = torch.randn(v, h, generator=g).to(torch.bfloat16).requires_grad_()
    tokens = torch.randint(0, v, (n,), generator=g)
    ht, wt = torch.randn(n, h, generator=g), torch.randn(v, h, generator=g)

    def run(from_hidden):
        w.grad = None
        hs = torch.nn.functional.embedding(tokens, w) * 1.5
        if from_hidden:
            loss = topk_union_smooth_l1_from_hidden(hs, w, ht, wt, k=6, chunk_size=7, sparse_weight_grad=sparse)
        else:
            loss = topk_union_smooth_l1_loss((hs @ w.t()).float(), ht @ wt.t(), k=6, impl="reference")
        loss.backward()
        return loss.detach(), w.grad
    got, ref = run(True), run(False)
    assert got[1].dtype == torch.bfloat16 and not got[1].is_sparse
    head_only = topk_union_smooth_l1_from_hidden(torch.nn.functional.embedding(tokens, w).detach(), w, ht, wt, k=6,
                                                 chunk_size=7, sparse_weight_grad=sparse)
    (own,) = torch.autograd.grad(head_only, w)
    assert own.is_sparse is sparse and (not sparse or own._nnz() < v)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1].float(), ref[1].float(), rtol=2e-2, atol=2e-3)


def test_padding_rows_cost_nothing_and_nonfinite_valid_rows_are_named():
    """Only valid rows are computed: a NaN hidden state at a padded position is ignored (as the logits
    loss ignores it), one at a valid position is reported by its flattened index; no valid row -> 0."""
    from mule_cli.kernels import NonFiniteLogits

    g = torch.Generator().manual_seed(3)
    n, h, v = 10, 8, 200
    hs = torch.randn(n, h, generator=g)
    ws, ht, wt = torch.randn(v, h, generator=g), torch.randn(n, h, generator=g), torch.randn(v, h, generator=g)
    valid = torch.ones(n, dtype=torch.bool)
    valid[[2, 7]] = False
    hs[7] = float("nan")
    got = topk_union_smooth_l1_from_hidden(hs, ws, ht, wt, k=4, valid=valid, chunk_size=3)
    want = topk_union_smooth_l1_loss(hs @ ws.t(), ht @ wt.t(), k=4, valid=valid, impl="reference")
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-6)
    hs[5] = float("inf")
    with pytest.raises(NonFiniteLogits, match="position 5 "):
        topk_union_smooth_l1_from_hidden(hs, ws, ht, wt, k=4, valid=valid, chunk_size=3)
    w = ws.clone().requires_grad_()
    none = topk_union_smooth_l1_from_hidden(hs, w, ht, wt, k=4, valid=torch.zeros(n, dtype=torch.bool))
    none.backward()
    assert none.item() == 0.0 and not w.grad.any()


def test_under_bf16_autocast_fp32_master_weights_get_fp32_gradients():
    """Training under --dtype bf16 autocast: bf16 hidden states, fp32 master lm_head; the op runs, stays close
    to the fp32 loss, and hands each input a gradient of its own dtype."""
    g = torch.Generator().manual_seed(4)
    n, h, v = 16, 8, 300
    x = torch.randn(n, h, generator=g)
    proj = torch.randn(h, h, generator=g).requires_grad_()
    ws = torch.randn(v, h, generator=g).requires_grad_()
    ht, wt = torch.randn(n, h, generator=g), torch.randn(v, h, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hs = x @ proj
        assert hs.dtype == torch.bfloat16
        loss = topk_union_smooth_l1_from_hidden(hs, ws, ht, wt, k=5, chunk_size=6)
    loss.backward()
    want = topk_union_smooth_l1_loss((x @ proj) @ ws.t(), ht @ wt.t(), k=5, impl="reference")
    assert ws.grad.dtype == torch.float32 and proj.grad.dtype == torch.float32
    torch.testing.assert_close(loss, want.detach(), rtol=0.05, atol=0.05)


def test_chunks_are_equal_and_bounded_by_the_head(monkeypatch):
    """Rows split into equal chunks no larger than asked (5 valid rows at chunk 4: 3 + 2, not 4 + 1), and by
    default a chunk's student + teacher logits are no larger than the lm_head: a narrow model's 44 rows at
    V = 128,256, H = 64 go in two chunks of 22 (one chunk held 43 MB against a 31 MB head)."""
    from mule_cli.kernels import chunked

    sizes = []
    real = chunked.row_terms
    monkeypatch.setattr(chunked, "row_terms", lambda s, t, *a: sizes.append(s.shape[1]) or real(s, t, *a))
    g = torch.Generator().manual_seed(3)
    hs, ws = torch.randn(6, 8, generator=g), torch.randn(40, 8, generator=g)
    valid = torch.tensor([True, True, False, True, True, True])
    topk_union_smooth_l1_from_hidden(hs, ws, hs, ws, k=3, valid=valid, chunk_size=4)
    assert sizes == [3, 2]
    assert chunked.default_chunk_rows(128256, 64) == 32  # 2·32·V = V·H
    assert chunked.default_chunk_rows(49152, 576) == 288  # the default model: H/2 < 2^24 // V = 341
    assert chunked.default_chunk_rows(128256, 3072) == 130  # Llama 3B: the 2^24-logit cap
