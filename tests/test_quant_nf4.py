"""NF4 against the QLoRA paper's code book and bitsandbytes' quantize_4bit / dequantize_4bit."""

import pytest
import torch

from adaptlab.quant import nf4
from adaptlab.quant.nf4 import NF4_CODE, bits_per_param, dynamic_map, quantize_nf4

bnb_f = pytest.importorskip("bitsandbytes.functional")

# QLoRA paper (arXiv:2305.14314), appendix E, as printed there
PAPER_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
             -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
             0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
             0.7229568362236023, 1.0]


def test_code_book_is_the_papers_and_bitsandbytes():
    assert NF4_CODE.tolist() == pytest.approx(PAPER_NF4, abs=0)
    assert torch.equal(NF4_CODE, bnb_f.get_4bit_type("nf4", device="cpu"))
    assert NF4_CODE[7] == 0 and NF4_CODE.min() == -1 and NF4_CODE.max() == 1


def test_dynamic_map_is_bitsandbytes():
    assert torch.equal(dynamic_map(), bnb_f.create_dynamic_map(signed=True))


def test_bits_per_param():
    assert bits_per_param() == pytest.approx(4.127, abs=5e-4)
    assert bits_per_param(double_quant=False) == 4.5
    t = quantize_nf4(torch.randn(256, 1024))
    assert t.nbytes() * 8 / t.numel() == pytest.approx(4.127, abs=1e-3)


@pytest.mark.parametrize("shape", [(128, 256), (37, 53), (64,)])
@pytest.mark.parametrize("double_quant", [False, True])
def test_codes_and_round_trip_match_bitsandbytes(shape, double_quant):
    torch.manual_seed(0)
    w = torch.randn(shape) * 0.02
    ours = quantize_nf4(w, double_quant=double_quant)
    packed, state = bnb_f.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=double_quant)
    assert torch.equal(ours.qweight, packed.view(-1))                  # identical 4-bit codes and packing
    ref = bnb_f.dequantize_4bit(packed, state)
    if not double_quant:
        assert torch.equal(ours.absmax, state.absmax)
        assert torch.equal(ours.dequantize(), ref)
    else:
        # bitsandbytes' C kernel picks the 8-bit code of a constant with a binary search that is not always
        # the nearest; with our own constants, its dequantization reproduces ours exactly
        assert torch.equal(ours.absmax_scale, state.state2.absmax) and ours.absmax_offset == state.offset
        state.absmax = ours.absmax
        assert torch.equal(ours.dequantize(), bnb_f.dequantize_4bit(packed, state))
        assert torch.allclose(ours.dequantize(), ref, atol=2e-3 * w.abs().max().item())


def test_torch_path_equals_bitsandbytes_kernel_path(monkeypatch):
    torch.manual_seed(1)
    t = quantize_nf4(torch.randn(96, 128))
    fast = t.dequantize()
    monkeypatch.setattr(nf4, "_bnb_ops", lambda: None)
    assert torch.equal(t.dequantize(), fast)
    rows = torch.tensor([[3, 0], [95, 3]])
    assert torch.equal(t.dequantize_rows(rows), fast[rows])


def test_error_is_bounded_by_half_the_largest_code_gap():
    torch.manual_seed(2)
    w = torch.randn(64, 64)
    t = quantize_nf4(w, double_quant=False)
    err = (t.dequantize() - w).abs().view(-1, 64)
    gap = (NF4_CODE[1:] - NF4_CODE[:-1]).max() / 2
    assert (err <= gap * t.absmax.unsqueeze(1) + 1e-6).all()


def test_quantized_model_lets_go_of_the_checkpoint_memory(tiny_dir):
    """Tensors left dense are copies: a view of the loader's memory map would keep the whole dense file mapped."""
    from transformers import AutoModelForCausalLM

    from adaptlab.quant.layers import QuantLinear, quantize_model

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    loaded = {t.untyped_storage().data_ptr() for t in model.state_dict().values()}
    quantize_model(model, lambda name, w: quantize_nf4(w))
    assert any(isinstance(m, QuantLinear) for m in model.modules())
    kept = list(model.state_dict().values())
    assert kept and not loaded & {t.untyped_storage().data_ptr() for t in kept}
    assert model.get_output_embeddings().weight.shape == model.get_input_embeddings().weight.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(96, 128), (37, 53)])
def test_quantize_kernel_path_equals_torch_path(monkeypatch, dtype, shape):
    torch.manual_seed(3)
    w = (torch.randn(shape) * 0.05).to(dtype)
    w[0, :8] = 0.0                                   # a zero run and exact ties at the block's absmax
    w[1, :4] = w[1].abs().max()
    fast = quantize_nf4(w)
    monkeypatch.setattr(nf4, "_bnb_ops", lambda: None)
    slow = quantize_nf4(w)
    for name, t in slow.buffers().items():
        assert torch.equal(fast.buffers()[name], t), name
