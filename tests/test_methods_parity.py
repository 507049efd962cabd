"""adaptlab's adapters are plain peft adapters: peft loads them with identical logits; merges agree."""

import pytest
import torch
from peft import PeftModel

from adaptlab.methods import MethodConfig, get_method
from adaptlab.models import tiny_llama


def trained(name, **cfg):
    model, tok = tiny_llama()
    model = get_method(name).apply(model.float(), MethodConfig(name=name, r=4, **cfg))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval(), tok


@pytest.fixture(scope="module")
def ids():
    _, tok = tiny_llama()
    return tok(["Parity with the ecosystem, token by token."], return_tensors="pt").input_ids


@pytest.mark.parametrize("name", ["lora", "dora", "ia3", "qlora"])
def test_plain_peft_loads_our_adapter(name, ids, tmp_path):
    model, _ = trained(name)
    get_method(name).save(model, tmp_path)
    base, _ = tiny_llama()
    theirs = PeftModel.from_pretrained(base.float(), tmp_path).eval()
    with torch.no_grad():
        if name == "qlora":  # the adapter is plain LoRA; peft applies it over the unquantized base
            ours = get_method("lora").load(tiny_llama()[0].float(), tmp_path).eval()(input_ids=ids).logits
        else:
            ours = model(input_ids=ids).logits
        assert torch.equal(theirs(input_ids=ids).logits, ours)


@pytest.mark.parametrize("name", ["lora", "ia3"])
def test_merge_equals_peft_merge_and_unload(name, ids, tmp_path):
    model, _ = trained(name)
    get_method(name).save(model, tmp_path)
    theirs = PeftModel.from_pretrained(tiny_llama()[0].float(), tmp_path).merge_and_unload()
    ours = get_method(name).merge(get_method(name).load(tiny_llama()[0].float(), tmp_path))
    for (k, a), (k2, b) in zip(sorted(ours.state_dict().items()), sorted(theirs.state_dict().items())):
        assert k == k2 and torch.equal(a, b), k


def test_ia3_targets_and_share():
    model, _ = trained("ia3")
    cfg = model.peft_config["default"]
    assert set(cfg.target_modules) == {"k_proj", "v_proj", "down_proj"} and set(cfg.feedforward_modules) == {"down_proj"}
    share = get_method("ia3").footprint(model).trainable_share
    assert 0 < share < 0.001
