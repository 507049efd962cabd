"""Every registered method through the whole contract on tiny_llama(): apply, train step, save, load, merge."""

import pytest
import torch

from adaptlab.methods import METHODS, MethodConfig, get_method
from adaptlab.models import tiny_llama

# group_size 16 so that QA-LoRA's pooled input (64 / 16 = 4 channels) admits rank 4
CFG = {"r": 4, "alpha": 8.0, "group_size": 16, "loftq_iters": 2}
# how far merged logits may drift from the adapter model's (fp32): fp rounding only
MERGE_TOL = 1e-4


@pytest.fixture(scope="module")
def prompt():
    _, tok = tiny_llama()
    return tok(["The quick brown fox jumps over the lazy dog."], return_tensors="pt").input_ids


def fresh():
    model, _ = tiny_llama(seed=0)
    return model.float()


def test_registry_lists_every_issue_method():
    assert {"full", "lora", "dora", "ia3", "qlora", "qalora", "loftq"} <= set(METHODS)
    for m in METHODS.values():
        assert m.name and m.paper and m.description


@pytest.mark.parametrize("name", sorted(METHODS))
def test_contract(name, prompt, tmp_path):
    method = get_method(name)
    model = method.apply(fresh(), MethodConfig(name=name, **CFG))
    model.train()
    loss = model(input_ids=prompt, labels=prompt).loss
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    with torch.no_grad():  # move away from the identity init so save/load/merge are tested on a real update
        for p in trainable:
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=prompt).logits

    fp = method.footprint(model)
    assert fp.trainable_params == sum(p.numel() for p in trainable)
    assert 0 < fp.trainable_share <= 1

    method.save(model, tmp_path)
    loaded = method.load(fresh(), tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=prompt).logits, ref, atol=1e-5)
        merged = method.merge(loaded).eval()
        assert not any(p.requires_grad for n, p in merged.named_parameters() if "lora" in n)
        drift = (merged(input_ids=prompt).logits - ref).abs().max().item()
    assert drift < MERGE_TOL, f"{name}: merged logits drift {drift}"
