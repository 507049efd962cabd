"""Packed attention (one causal attention per packed sequence) is the same maths as transformers' block-masked
SDPA over the row: same loss and gradients for SFT rows and preference pairs; other calls are untouched."""

import copy

import torch

from adaptlab.data import Instruction, Preference
from adaptlab.data.packing import collate_packed, pack
from adaptlab.data.templates import tokenize_record
from adaptlab.train.attention import NAME, use_packed_attention
from adaptlab.train.objectives.pairs import collate_pairs, pair_examples, sequence_logprobs
from adaptlab.train.objectives.sft import response_loss


def models(tiny):
    model, tok = tiny
    masked = copy.deepcopy(model).float()
    masked.set_attn_implementation("sdpa")
    packed = copy.deepcopy(masked)
    assert use_packed_attention(packed) and packed.config._attn_implementation == NAME
    return masked, packed, tok


def loss_and_grads(model, fn):
    model.zero_grad(set_to_none=True)
    loss = fn(model)
    loss.sum().backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def assert_same(masked, packed, fn):
    loss_m, grads_m = loss_and_grads(masked, fn)
    loss_p, grads_p = loss_and_grads(packed, fn)
    torch.testing.assert_close(loss_p, loss_m, rtol=1e-5, atol=1e-5)
    assert grads_m.keys() == grads_p.keys() and grads_m
    for name in grads_m:
        torch.testing.assert_close(grads_p[name], grads_m[name], rtol=1e-4, atol=1e-5, msg=name)


def test_packed_sft_rows_give_the_masked_loss_and_gradients(tiny):
    masked, packed, tok = models(tiny)
    examples = [tokenize_record(Instruction(f"Question {i}: {i} plus {i}?", f"It is {2 * i}." * (i % 3 + 1)), tok)
                for i in range(7)]
    rows = pack(examples, seq_len=128, pad_id=tok.pad_token_id)
    batch = collate_packed(rows, 128, tok.pad_token_id)
    assert any(len(s) > 2 for s in batch.segments) and all(sum(s) == 128 for s in batch.segments)
    assert_same(masked, packed, lambda m: response_loss(m, batch))


def test_packed_preference_pairs_give_the_masked_log_probs_and_gradients(tiny):
    masked, packed, tok = models(tiny)
    records = [Preference(f"Say {i}", f"{i} it is", f"no {i}, never" * (i + 1)) for i in range(3)]
    batch = collate_pairs(pair_examples(records, tok, 96), 96, tok.pad_token_id)
    assert_same(masked, packed, lambda m: sequence_logprobs(m, batch))


def test_calls_without_segments_are_plain_sdpa(tiny):
    masked, packed, tok = models(tiny)
    ids = torch.tensor([[tok.pad_token_id, 5, 6, 7], [8, 9, 10, 11]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    with torch.no_grad():
        torch.testing.assert_close(packed(input_ids=ids, attention_mask=mask).logits,
                                   masked(input_ids=ids, attention_mask=mask).logits)
        out_m = masked.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
        out_p = packed.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(out_m, out_p)
