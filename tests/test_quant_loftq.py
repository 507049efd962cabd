"""LoftQ: Q + B A approximates W better than Q alone, and more iterations never make it worse."""

import itertools

import pytest
import torch

from adaptlab.quant.groupwise import quantize_groupwise
from adaptlab.quant.loftq import loftq
from adaptlab.quant.nf4 import quantize_nf4

QUANTIZERS = {"nf4": lambda w: quantize_nf4(w), "int2": lambda w: quantize_groupwise(w, 2, 16)}


@pytest.mark.parametrize("kind", sorted(QUANTIZERS))
def test_beats_plain_quantization_and_does_not_grow_with_iterations(kind):
    torch.manual_seed(0)
    w = torch.randn(96, 128) * 0.05 + 0.02 * torch.randn(96, 4) @ torch.randn(4, 128)  # weight with low-rank structure
    plain = float(torch.linalg.norm(w - QUANTIZERS[kind](w).dequantize()))
    best = []
    for iters in (1, 2, 3, 5):
        r = loftq(w, rank=8, iters=iters, quantize=QUANTIZERS[kind])
        err = float(torch.linalg.norm(w - (r.q.dequantize() + r.B @ r.A)))
        assert r.quant_error == pytest.approx(plain)
        assert err < plain
        assert err == pytest.approx(min(r.errors), rel=1e-5)
        best.append(err)
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(best))
