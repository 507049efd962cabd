"""Group-wise asymmetric intN against its closed form; bit packing round trips."""

import pytest
import torch

from adaptlab.quant.groupwise import check_groupwise, pack_bits, quantize_groupwise, unpack_bits


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_pack_unpack_round_trip(bits):
    codes = torch.randint(0, 1 << bits, (5, 24), dtype=torch.uint8)
    packed = pack_bits(codes, bits)
    assert packed.numel() == codes.numel() * bits // 8
    assert torch.equal(unpack_bits(packed, bits, codes.numel()).view(5, 24), codes)


def test_int4_packing_is_low_nibble_first():
    packed = pack_bits(torch.tensor([1, 2, 3, 4, 5, 6, 7, 15], dtype=torch.uint8), 4)
    assert packed.tolist() == [0x21, 0x43, 0x65, 0xF7]


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_matches_closed_form(bits):
    torch.manual_seed(0)
    w = torch.randn(6, 64)
    L = 16
    t = quantize_groupwise(w, bits, L, scale_dtype=torch.float32)
    g = w.view(6, 4, L)
    lo, hi = g.amin(-1).clamp(max=0), g.amax(-1).clamp(min=0)
    scale = (hi - lo) / (2**bits - 1)
    zero = -lo / scale
    q = torch.round(g / scale[..., None] + zero[..., None]).clamp(0, 2**bits - 1)
    assert torch.allclose(t.scales, scale) and torch.allclose(t.zeros, zero)
    assert torch.equal(t.codes().view(6, 4, L).float(), q)
    deq = (scale[..., None] * (q - zero[..., None])).view(6, 64)
    assert torch.allclose(t.dequantize(), deq, atol=1e-6)
    # every element lands within half a step of the original
    assert ((t.dequantize() - w).abs().view(6, 4, L) <= scale[..., None] / 2 + 1e-6).all()


def test_rows_lookup_equals_full_dequantize():
    t = quantize_groupwise(torch.randn(50, 32), 4, 8)
    rows = torch.tensor([[0, 7], [49, 7]])
    assert torch.equal(t.dequantize_rows(rows), t.dequantize()[rows])


def test_bad_group_size_and_bits_are_clear_errors():
    with pytest.raises(ValueError, match="group_size=24 does not divide the input dimension 64"):
        check_groupwise((8, 64), 4, 24)
    with pytest.raises(ValueError, match="bits=5"):
        check_groupwise((8, 64), 5, 16)


def test_quantized_layers_keep_their_dtypes_under_model_to():
    from adaptlab.quant.layers import QuantLinear
    from adaptlab.quant.nf4 import quantize_nf4

    layer = QuantLinear(quantize_nf4(torch.randn(8, 64)))
    before = layer.quantized().dequantize()
    layer.to(torch.bfloat16)
    assert layer.absmax_scale.dtype == torch.float32 and layer.qweight.dtype == torch.uint8
    assert torch.equal(layer.quantized().dequantize(), before)
