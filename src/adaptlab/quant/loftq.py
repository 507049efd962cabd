"""LoftQ initialisation: a quantized Q and a rank-r pair (A, B) such that Q + B A approximates W.

Li et al. 2023, "LoftQ: LoRA-Fine-Tuning-Aware Quantization for Large Language Models", arXiv:2310.08659,
Algorithm 1 (A_0 = B_0 = 0):

    for t = 1 .. T:
        Q_t        = q_N(W - B_{t-1} A_{t-1})              (any quantizer: NF4 or group-wise intN)
        B_t, A_t   = SVD_r(W - Q_t):  U_r sqrt(S_r), sqrt(S_r) V_r^T

T = 1 is the QLoRA start (Q = q_N(W)) plus the best rank-r fit of its error, so ||W - (Q + B A)||_F is
already below ||W - Q||_F. The alternation is not guaranteed monotone (q_N is a step function), so the
iterate with the smallest error is returned: the error never grows with T. Runs on any torch device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from adaptlab.quant.layers import QuantizedTensor


@dataclass
class LoftQResult:
    q: QuantizedTensor
    A: torch.Tensor            # [r, in]
    B: torch.Tensor            # [out, r]
    errors: list[float]        # ||W - (Q_t + B_t A_t)||_F for t = 1 .. T
    quant_error: float         # ||W - q_N(W)||_F, the QLoRA start


def low_rank(residual: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best rank-r factors (Eckart-Young): B = U_r sqrt(S_r), A = sqrt(S_r) V_r^T."""
    U, S, Vh = torch.linalg.svd(residual, full_matrices=False)
    root = S[:rank].sqrt()
    return root.unsqueeze(1) * Vh[:rank], U[:, :rank] * root


@torch.no_grad()
def loftq(w: torch.Tensor, rank: int, iters: int, quantize: Callable[[torch.Tensor], QuantizedTensor]) -> LoftQResult:
    """Alternate quantization and rank-r SVD for `iters` steps; return the best (Q, A, B) seen."""
    w = w.float()
    lowrank = torch.zeros_like(w)
    best, errors, quant_error = None, [], 0.0
    for t in range(iters):
        q = quantize(w - lowrank)
        dense = q.dequantize(torch.float32)
        if t == 0:
            quant_error = float(torch.linalg.norm(w - dense))
        A, B = low_rank(w - dense, rank)
        lowrank = B @ A
        errors.append(float(torch.linalg.norm(w - dense - lowrank)))
        if best is None or errors[-1] < best[0]:
            best = (errors[-1], q, A, B)
    _, q, A, B = best
    return LoftQResult(q=q, A=A, B=B, errors=errors, quant_error=quant_error)
