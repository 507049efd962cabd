"""loglikelihoods/generate against lm-evaluation-harness's HF backend and a plain per-request forward."""

import pytest
import torch

from adaptlab.models import generation, tiny_llama


@pytest.fixture(scope="module")
def tiny():
    model, tok = tiny_llama(seed=0)
    return model, tok


FEWSHOT = "".join(f"Question {i}: what is {i} plus {i}?\nAnswer: {2 * i}\n\n" for i in range(6))


def _requests():
    reqs = []
    for q in ["What colour is the sky?", "How many legs has a cat?", "Name a prime.", "What is the capital of Peru?"]:
        ctx = FEWSHOT + f"Question: {q}\nAnswer:"
        reqs += [(ctx, f" {c}") for c in ["A", "B", "C", "D"]]          # one-token choices share one row
        reqs += [(ctx, " blue and green"), (ctx + " ", "seven")]        # multi-token; trailing space moves
    reqs += [("Short context", " x y z"), ("", "hello world"), ("Another one", " q")]
    return reqs


def _naive(model, tok, context, continuation):
    ctx, cont = generation.encode_pair(tok, context, continuation)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    tgt = torch.tensor(cont)
    rows = lp[len(ctx) - 1:]
    return rows.gather(-1, tgt[:, None]).sum().item(), bool((rows.argmax(-1) == tgt).all())


def test_loglikelihoods_match_naive_forward(tiny):
    model, tok = tiny
    reqs = _requests()
    ours = generation.loglikelihoods(model, tok, reqs, batch_size=3)
    for (c, x), (lp, greedy) in zip(reqs, ours):
        ref_lp, ref_greedy = _naive(model, tok, c, x)
        assert lp == pytest.approx(ref_lp, abs=1e-3)
        assert greedy == ref_greedy


def test_shared_prefix_is_used(tiny):
    _, tok = tiny
    rows = generation._rows(tok, _requests(), 2048)
    groups, _ = generation._groups(rows)
    assert groups, "items with the same few-shot block must share a prefix"
    plen, members = groups[0]
    assert plen >= len(tok.encode(FEWSHOT)) - 2 and len(members) >= 4
    assert len(rows) < len(_requests())          # " A".." D" collapsed into one row per item


def test_loglikelihoods_match_lm_eval(tiny):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model, tok = tiny
    reqs = _requests()
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=4, device="cpu")
    insts = [Instance("loglikelihood", {}, r, i) for i, r in enumerate(reqs)]
    theirs = lm.loglikelihood(insts, disable_tqdm=True)
    ours = generation.loglikelihoods(model, tok, reqs, batch_size=5)
    for (a, ga), (b, gb) in zip(ours, theirs):
        assert a == pytest.approx(b, abs=1e-3)
        assert ga == gb


def test_generate_greedy_matches_hf_and_stops(tiny):
    model, tok = tiny
    prompts = ["Once upon a time", "The quick brown fox jumps over the lazy dog because", "Hi"]
    outs = generation.generate(model, tok, prompts, max_new_tokens=12, batch_size=2)
    for p, o in zip(prompts, outs):
        ids = torch.tensor([tok.encode(p)])
        ref = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        assert o == tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)
    # a stop string is cut from the output, and nothing after it survives
    stop = [outs[0][3:6]] if len(outs[0]) > 6 else ["\n"]
    cut = generation.generate(model, tok, prompts[:1], max_new_tokens=12, stop=stop)[0]
    assert cut == generation.truncate_at_stop(outs[0], stop) and stop[0] not in cut


def test_generate_sampling_seeded(tiny):
    model, tok = tiny
    torch.manual_seed(1)
    a = generation.generate(model, tok, ["Hello"], max_new_tokens=8, temperature=1.0)
    torch.manual_seed(1)
    b = generation.generate(model, tok, ["Hello"], max_new_tokens=8, temperature=1.0)
    assert a == b and isinstance(a[0], str)


def test_truncate_at_stop_earliest():
    assert generation.truncate_at_stop("a\n\nQ: b", ["Q:", "\n\n"]) == "a"
    assert generation.truncate_at_stop("abc", None) == "abc"


def test_generate_prefix_cache_matches_plain_generation(monkeypatch):
    model, tok = tiny_llama(seed=0)
    with torch.no_grad():   # sharpen the random model so greedy outputs differ between prompts
        for p in model.parameters():
            p.mul_(8)
    prompts = [FEWSHOT + f"Question: {q}\nAnswer:" for q in ["two plus three?", "a colour", "why is the sky blue?", "hi"]]
    shared = generation.generate(model, tok, prompts, max_new_tokens=10, batch_size=3)
    monkeypatch.setattr(generation, "MIN_SHARED_PREFIX", 10**9)   # disables the prefix cache
    plain = generation.generate(model, tok, prompts, max_new_tokens=10, batch_size=3)
    assert shared == plain and len(set(shared)) > 1
