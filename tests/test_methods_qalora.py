"""QA-LoRA: the merge keeps the integer codes on the grid, moves only zero points, and changes no logits."""

import pytest
import torch

from adaptlab.methods import MethodConfig, get_method
from adaptlab.methods.qalora import QALoRALinear
from adaptlab.models import tiny_llama
from adaptlab.quant.export import is_quantized_export, load_quantized, save_quantized
from adaptlab.quant.layers import QuantLinear


def trained_qalora(bits=4, group_size=16, seed=0):
    model, tok = tiny_llama(seed=seed)
    model = get_method("qalora").apply(model.float(), MethodConfig(name="qalora", r=4, bits=bits, group_size=group_size))
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval(), tok


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_merge_keeps_codes_on_grid_and_logits(bits):
    model, tok = trained_qalora(bits=bits)
    ids = tok(["QA-LoRA merges into zero points."], return_tensors="pt").input_ids
    layers = {n: m for n, m in model.named_modules() if isinstance(m, QALoRALinear)}
    before = {n: (m.quantized().codes().clone(), m.scales.clone(), m.zeros.clone()) for n, m in layers.items()}
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        merged = get_method("qalora").merge(model)
        out = merged(input_ids=ids).logits
    assert (out - ref).abs().max() < 1e-4
    assert not any(isinstance(m, QALoRALinear) for m in merged.modules())
    for name, (codes, scales, zeros) in before.items():
        layer = merged.get_submodule(name)
        assert type(layer) is QuantLinear
        q = layer.quantized()
        assert torch.equal(q.codes(), codes)                        # integer weights unchanged
        assert int(q.codes().max()) <= 2**bits - 1                  # and on the N-bit grid
        assert torch.equal(q.scales, scales)
        assert not torch.equal(q.zeros.float(), zeros.float())     # the update went into the zero points


def test_update_is_constant_inside_each_group():
    model, _ = trained_qalora()
    layer = next(m for m in model.modules() if isinstance(m, QALoRALinear))
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        base = QuantLinear(layer.quantized())(x)
        dense_delta = layer(x) - base  # = x Delta^T, Delta constant over each group of L inputs
        delta = layer.scaling / layer.group_size * (layer.lora_B.weight @ layer.lora_A.weight)
        expanded = delta.repeat_interleave(layer.group_size, dim=1)
    assert torch.allclose(dense_delta, x @ expanded.T, atol=1e-5)


def test_dropout_is_after_pooling():
    model, _ = tiny_llama()
    model = get_method("qalora").apply(model.float(), MethodConfig(name="qalora", r=4, group_size=16, dropout=0.5))
    layer = next(m for m in model.modules() if isinstance(m, QALoRALinear))
    seen = []
    layer.dropout.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[-1]))
    layer(torch.randn(2, layer.in_features))
    assert seen == [layer.in_features // layer.group_size]


def test_low_bit_export_loads_back(tmp_path):
    model, tok = trained_qalora()
    ids = tok(["export me"], return_tensors="pt").input_ids
    merged = get_method("qalora").merge(model)
    with torch.no_grad():
        ref = merged(input_ids=ids).logits
    save_quantized(merged, tmp_path, tok)
    assert is_quantized_export(tmp_path)
    loaded = load_quantized(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, ref)
    packed = loaded.get_submodule("model.layers.0.self_attn.q_proj").qweight
    assert packed.dtype == torch.uint8 and packed.numel() == 64 * 64 // 2  # int4: two codes per byte
    out = loaded.generate(ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 3


def test_adapter_file_is_peft_layout(tmp_path):
    import json

    model, _ = trained_qalora()
    get_method("qalora").save(model, tmp_path)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["use_qalora"] is True and cfg["qalora_group_size"] == 16 and cfg["peft_type"] == "LORA"
    from safetensors.torch import load_file

    keys = load_file(tmp_path / "adapter_model.safetensors")
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert keys["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape == (4, 64 // 16)
