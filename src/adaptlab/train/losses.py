"""Loss maths as pure functions.

`linear_cross_entropy` is the next-token loss computed straight from hidden states, chunk by chunk,
without ever holding the full [tokens x vocabulary] logits (the idea of Liger Kernel's fused linear
cross-entropy, Hsu et al. 2024, arXiv:2410.10989, and of Apple's Cut Cross-Entropy, Wijmans et al. 2024,
arXiv:2411.09009):

    loss = sum_i  logsumexp(W h_i) - (W h_i)[y_i]

Its gradients are formed inside the forward pass, chunk by chunk:

    d loss / d logits_i = softmax(W h_i) - onehot(y_i)
    d loss / d h_i      = (softmax - onehot) W
    d loss / d W        = sum_i (softmax - onehot)^T h_i

so only d/dh ([tokens x hidden]) and d/dW (when W trains) are kept for backward, never the logits.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:
        need_w = weight.requires_grad
        grad_h = torch.empty_like(hidden)
        acc = torch.promote_types(hidden.dtype, torch.float32)  # softmax in at least fp32
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=acc, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            h = hidden[s:s + chunk]
            y = targets[s:s + chunk]
            logits = (h @ weight.t()).to(acc)
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
            g = torch.softmax(logits, dim=-1)
            g[torch.arange(len(y), device=y.device), y] -= 1.0
            g = g.to(hidden.dtype)
            grad_h[s:s + chunk] = g @ weight
            if need_w:
                grad_w += (g.t() @ h).to(acc)
        ctx.save_for_backward(grad_h, grad_w if need_w else torch.empty(0))
        ctx.need_w = need_w
        ctx.w_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype)
        gw = (grad_w * grad_out).to(ctx.w_dtype) if ctx.need_w else None
        return gh, gw, None, None


def linear_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int = 2048) -> Tensor:
    """Summed cross-entropy of `targets` [N] under logits `hidden @ weight.T` ([N,H] x [V,H]), in chunks."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk)
