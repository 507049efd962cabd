"""Fused RMSNorm and SwiGLU for training: the same maths as transformers' modules, less kept for backward.

RMSNorm (Zhang & Sennrich 2019, arXiv:1910.07467), as Llama computes it (statistics in fp32, the normalised
activations rounded to the input dtype before the weight):

    y = w * (x / sqrt(mean(x^2) + eps)),     rstd = 1 / sqrt(mean(x^2) + eps),   x_hat = x * rstd
    dL/dx = rstd * (g_hat - x_hat * mean(g_hat * x_hat)),   g_hat = w * dL/dy,     dL/dw = sum g * x_hat

Autograd through transformers' module keeps an fp32 copy of `x` per norm (2x the bf16 residual stream); the
fused version keeps `x` in its own dtype and one fp32 `rstd` per token (builtin model, reward step of 4 x 256
tokens: 135 MB of fp32 copies become 68 MB), at the same speed.

SwiGLU MLP (Shazeer 2020, arXiv:2002.05202):  down(silu(gate(x)) * up(x)),  silu(a) = a sigmoid(a):

    d/d up   = g * silu(a),     d/d a = g * up * s (1 + a (1 - s)),   s = sigmoid(a)

Autograd keeps gate(x), up(x) and silu(gate(x)); the fused product keeps the first two and recomputes the
sigmoid in backward: one [tokens x intermediate] activation less per layer (90 MB in that step).

`fuse_model` swaps these in for the forward of every matching module (a `*RMSNorm` with `weight` and
`variance_epsilon`; an MLP with `gate_proj`, `up_proj`, `down_proj` and a SiLU `act_fn`), adapter-wrapped
projections included; other architectures keep their own modules.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        rstd = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True).add_(eps))
        ctx.save_for_backward(x, weight, rstd)
        return weight * (x.float() * rstd).to(x.dtype)   # rounded as transformers rounds it

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, rstd = ctx.saved_tensors
        x_hat = x.float() * rstd
        g = grad.float()
        grad_w = (g * x_hat).sum(tuple(range(g.dim() - 1))).to(weight.dtype) if ctx.needs_input_grad[1] else None
        g_hat = g * weight.float()
        grad_x = rstd * (g_hat - x_hat * (g_hat * x_hat).mean(-1, keepdim=True))
        return grad_x.to(x.dtype), grad_w, None


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """weight * x / sqrt(mean(x^2) + eps) over the last dimension, keeping `x` and the per-row rstd for backward."""
    return _RMSNorm.apply(x, weight, eps)


class _SiluMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: Tensor, up: Tensor) -> Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad: Tensor):
        gate, up = ctx.saved_tensors
        # the sigmoid recomputed, then autograd's own kernels: the same numbers as the unfused product
        grad_up = grad * F.silu(gate)
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        return grad_gate, grad_up


def silu_mul(gate: Tensor, up: Tensor) -> Tensor:
    """silu(gate) * up, keeping only `gate` and `up` for backward."""
    return _SiluMul.apply(gate, up)


def _norm_forward(self: nn.Module, x: Tensor) -> Tensor:
    return rms_norm(x, self.weight, self.variance_epsilon)


def _mlp_forward(self: nn.Module, x: Tensor) -> Tensor:
    return self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x)))


SILU = ("SiLU", "SiLUActivation")  # torch's and transformers' SiLU modules (both F.silu)


def _is_rms_norm(module: nn.Module) -> bool:
    return type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon") and \
        isinstance(getattr(module, "weight", None), nn.Parameter)


def _is_swiglu(module: nn.Module) -> bool:
    return all(hasattr(module, p) for p in ("gate_proj", "up_proj", "down_proj")) and \
        type(getattr(module, "act_fn", None)).__name__ in SILU


FUSED = {"rms_norm": (_is_rms_norm, _norm_forward), "swiglu": (_is_swiglu, _mlp_forward)}


def fuse_model(model: nn.Module) -> dict[str, int]:
    """Route every matching module's forward through the fused function (in place); returns how many of each."""
    counts = dict.fromkeys(FUSED, 0)
    for module in model.modules():
        for name, (matches, forward) in FUSED.items():
            if matches(module):
                module.forward = types.MethodType(forward, module)
                counts[name] += 1
    return counts
