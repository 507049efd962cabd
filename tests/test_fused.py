"""Fused RMSNorm and SwiGLU (train/fused.py) are transformers' maths: same loss and gradients as the unfused
modules, every weight's gradient included, and less kept for backward."""

import copy

import pytest
import torch

from adaptlab.data import Instruction
from adaptlab.data.packing import collate_packed, pack
from adaptlab.data.templates import tokenize_record
from adaptlab.train.fused import fuse_model
from adaptlab.train.objectives.sft import response_loss


def batch_of(tok):
    examples = [tokenize_record(Instruction(f"Question {i}: {i} plus {i}?", f"It is {2 * i}." * (i % 3 + 1)), tok)
                for i in range(5)]
    return collate_packed(pack(examples, seq_len=96, pad_id=tok.pad_token_id), 96, tok.pad_token_id)


def loss_grads_saved(model, batch):
    model.zero_grad(set_to_none=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        loss = response_loss(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}, sum(saved)


@pytest.mark.parametrize("dtype, rtol, atol", [(torch.float32, 1e-4, 1e-5), (torch.bfloat16, 2e-2, 2e-2)])
def test_fused_model_gives_the_unfused_loss_and_gradients(tiny, dtype, rtol, atol):
    model, tok = tiny
    plain = copy.deepcopy(model).to(dtype)
    with torch.no_grad():  # norm weights away from 1, so their gradient and the weight's role are both tested
        for name, p in plain.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    fused = copy.deepcopy(plain)
    layers = plain.config.num_hidden_layers
    assert fuse_model(fused) == {"rms_norm": 2 * layers + 1, "swiglu": layers}
    batch = batch_of(tok)
    loss_p, grads_p, saved_p = loss_grads_saved(plain, batch)
    loss_f, grads_f, saved_f = loss_grads_saved(fused, batch)
    torch.testing.assert_close(loss_f, loss_p, rtol=rtol, atol=atol)
    assert grads_p.keys() == grads_f.keys() and any("norm" in n for n in grads_p)
    for name in grads_p:
        scale = grads_p[name].abs().max().clamp(min=1e-6)
        torch.testing.assert_close(grads_f[name] / scale, grads_p[name] / scale, rtol=rtol, atol=atol, msg=name)
    assert saved_f < saved_p


def test_fused_model_generates_as_before(tiny):
    model, tok = tiny
    plain = copy.deepcopy(model)
    fused = copy.deepcopy(model)
    fuse_model(fused)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(fused(input_ids=ids).logits, plain(input_ids=ids).logits)
        assert torch.equal(fused.generate(ids, max_new_tokens=5, do_sample=False),
                           plain.generate(ids, max_new_tokens=5, do_sample=False))
