"""Several adapters on one base; merge fidelity reports."""

import pytest
import torch

from adaptlab.methods import MethodConfig, get_method
from adaptlab.methods.fidelity import DriftTooLarge, check_drift, logit_drift, merge_with_report
from adaptlab.methods.multi import AdapterSet
from adaptlab.models import tiny_llama


def save_adapter(tmp_path, name, seed):
    model, _ = tiny_llama()
    model = get_method("lora").apply(model.float(), MethodConfig(r=4))
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))
    get_method("lora").save(model.eval(), tmp_path / name)
    return model


def test_load_switch_mix_unload(tmp_path):
    _, tok = tiny_llama()
    ids = tok(["one base, many adapters"], return_tensors="pt").input_ids
    refs = {n: save_adapter(tmp_path, n, seed)(input_ids=ids).logits.detach() for n, seed in [("a", 1), ("b", 2)]}
    base_ref = tiny_llama()[0].float()(input_ids=ids).logits.detach()

    adapters = AdapterSet(tiny_llama()[0].float())
    adapters.load("a", tmp_path / "a")
    adapters.load("b", tmp_path / "b")
    assert adapters.names == ["a", "b"]
    with torch.no_grad():
        for name in ["a", "b", "a"]:  # switch per batch
            with adapters.active(name) as model:
                assert torch.allclose(model(input_ids=ids).logits, refs[name], atol=1e-5)
        with adapters.active("__base__") as model:
            assert torch.allclose(model(input_ids=ids).logits, base_ref, atol=1e-5)
        mixed = adapters.forward_mixed(["b", "a", "__base__"], input_ids=ids.repeat(3, 1)).logits
    assert torch.allclose(mixed[0], refs["b"][0], atol=1e-5) and torch.allclose(mixed[1], refs["a"][0], atol=1e-5)
    assert torch.allclose(mixed[2], base_ref[0], atol=1e-5)

    adapters.unload("a")
    assert adapters.names == ["b"]
    with pytest.raises(ValueError, match="no adapter named 'a'; loaded: \\['b'\\]"):
        adapters.use("a")
    adapters.unload("b")
    with torch.no_grad():
        assert torch.allclose(adapters.base(input_ids=ids).logits, base_ref, atol=1e-5)


def test_loading_a_non_adapter_folder_is_clear(tmp_path):
    with pytest.raises(ValueError, match="holds no peft adapter"):
        AdapterSet(tiny_llama()[0]).load("x", tmp_path)


def test_drift_report_and_threshold():
    a, b = [torch.zeros(2, 3)], [torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.0, -1.0]])]
    d = logit_drift(a, b)
    assert d.max_abs == 1.0 and d.mean_abs == pytest.approx(0.25) and d.tokens == 2
    check_drift(d, threshold=2.0)
    check_drift(d, threshold=0.5, force=True)
    with pytest.raises(DriftTooLarge, match="up to 1 .* threshold 0.5"):
        check_drift(d, threshold=0.5)


def test_merge_with_report_on_qlora_is_small():
    model, tok = tiny_llama()
    method = get_method("qlora")
    model = method.apply(model.float(), MethodConfig(name="qlora", r=4))
    _, drift = merge_with_report(model, tok, method.merge, prompts=["hello there", "2 + 2 ="])
    assert drift.tokens > 2 and drift.max_abs < 1e-4


def test_peft_in_place_merge_over_quantized_base_is_refused():
    model, _ = tiny_llama()
    model = get_method("qlora").apply(model.float(), MethodConfig(name="qlora", r=4))
    with pytest.raises(RuntimeError, match="cannot merge into a quantized base"):
        model.merge_and_unload()
