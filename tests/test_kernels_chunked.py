"""The hidden-state (chunked, no full logits) variant equals the logits-level loss, value and gradients."""

from __future__ import annotations

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
