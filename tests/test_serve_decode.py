"""Step-level decoder: rows joining and leaving a running batch decode exactly as transformers does alone."""

import pytest
import torch

from adaptlab.methods import MethodConfig, get_method
from adaptlab.methods.multi import BASE, AdapterSet
from adaptlab.models import decode, tiny_llama
from adaptlab.models.decode import Lane, Row, SamplingParams, sample_tokens
from adaptlab.serve.batched import RowAdapters

PROMPTS = ["The capital of France is", "1, 2, 3, 4,", "def add(a, b):\n    return", "Once"]


def _row(tok, prompt, n=8, adapter=BASE, **kw):
    return Row(tok.encode(prompt), SamplingParams(max_tokens=n, **kw), adapter, tok, frozenset(), 2048)


def _reference(model, tok, prompt, n=8):
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(input_ids=ids, max_new_tokens=n, do_sample=False, min_new_tokens=n,
                             pad_token_id=tok.eos_token_id)
    return out[0, ids.shape[1]:].tolist()


def _run_lane(lane, schedule):
    """schedule: step index -> rows joining before that step; runs until every row finished."""
    rows, step = [], 0
    while step in schedule or lane.rows or any(k > step for k in schedule):
        if step in schedule:
            rows += schedule[step]
            lane.join(schedule[step])
        lane.step()
        lane.remove({r.id for r in lane.rows if r.finish_reason})
        step += 1
    return rows


@pytest.mark.parametrize("room", [64, 2])   # 2: the cache outgrows its spare room several times
def test_rows_joining_mid_batch_match_transformers_generate(tiny, monkeypatch, room):
    monkeypatch.setattr(decode, "ROOM", room)
    model, tok = tiny
    model = model.float()
    lane = Lane(lambda names, **inputs: model(**inputs), tok.pad_token_id)
    schedule = {0: [_row(tok, PROMPTS[0]), _row(tok, PROMPTS[1], n=3)], 2: [_row(tok, PROMPTS[2])],
                5: [_row(tok, PROMPTS[3], n=6)]}
    rows = _run_lane(lane, schedule)
    assert not lane.rows and lane.cache is None
    for row, prompt in zip(rows, PROMPTS, strict=True):
        assert row.generated == _reference(model, tok, prompt, row.params.max_tokens)
        assert row.finish_reason == "length"


def _lora(path, seed: int):
    lora = get_method("lora").apply(tiny_llama()[0].float(), MethodConfig(r=4))
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in lora.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    lora.save_pretrained(path)
    return path


@pytest.mark.parametrize("routed", ["peft", "rows"])
def test_mixed_adapters_in_one_batch_match_each_adapter_alone(tmp_path, routed):
    model, tok = tiny_llama()
    adapters = AdapterSet(model.float())
    adapters.load("a", _lora(tmp_path / "a", 1))
    adapters.load("b", _lora(tmp_path / "b", 2))
    lane = Lane(adapters.forward_mixed if routed == "peft" else RowAdapters(adapters.model), tok.pad_token_id)
    rows = _run_lane(lane, {0: [_row(tok, PROMPTS[0], adapter="a"), _row(tok, PROMPTS[0], adapter="b")],
                            1: [_row(tok, PROMPTS[0], adapter=BASE)]})
    for row in rows:
        with adapters.active(row.adapter) as m:
            assert row.generated == _reference(m, tok, PROMPTS[0]), row.adapter
    assert rows[0].generated != rows[1].generated


def test_a_shared_prompt_prefix_is_computed_once_per_adapter_and_kept(tmp_path):
    model, tok = tiny_llama()
    adapters = AdapterSet(model.float())
    adapters.load("a", _lora(tmp_path / "a", 1))
    lane = Lane(RowAdapters(adapters.model), tok.pad_token_id)
    system = "You are a careful assistant who answers every question in one short sentence and never guesses. "
    prompts = [system + q for q in ["What is 2+2?", "Name a colour.", "Say hi."]]
    calls = []
    forward = lane.forward
    lane.forward = lambda names, **inputs: calls.append(inputs["input_ids"].shape) or forward(names, **inputs)
    rows = _run_lane(lane, {0: [_row(tok, prompts[0], adapter="a"), _row(tok, prompts[1])],
                            2: [_row(tok, prompts[2], adapter="a")]})
    (prefix, per_adapter), = lane.prefixes.items()
    assert len(prefix) >= 16 and set(per_adapter) == {"a", BASE}
    assert calls[0] == (2, len(prefix)) and calls[1][1] < len(prefix)   # the prefix once, then suffixes only
    for row, prompt in zip(rows, prompts, strict=True):
        with adapters.active(row.adapter) as m:
            assert row.generated == _reference(m, tok, prompt), row.adapter


@pytest.mark.parametrize("budget", [5, 16])
def test_prompts_prefilled_in_chunks_between_steps_match_transformers_generate(tmp_path, budget):
    model, tok = tiny_llama()
    adapters = AdapterSet(model.float())
    adapters.load("a", _lora(tmp_path / "a", 1))
    lane = Lane(RowAdapters(adapters.model), tok.pad_token_id)
    system = "You are a careful assistant who answers every question in one short sentence and never guesses. "
    prompts = [PROMPTS[0], system + "What is 2+2?", system + "Name a colour, any colour you like."]
    first = _row(tok, prompts[0], n=30)
    lane.join([first])
    joining = [_row(tok, prompts[1], adapter="a"), _row(tok, prompts[2])]
    lane.queue(joining)
    fed, steps_before_join = [], 0
    while lane.pending:
        released, used = lane.prefill(budget)
        fed.append(used)
        steps_before_join += not released
        lane.step()
    while any(not r.finish_reason for r in joining):
        lane.step()
    # each call feeds at most `budget` tokens (or one column of the batch), the shared prefix (once per adapter)
    # and the suffixes over several calls, while the running row decodes a token per call
    assert max(fed) <= max(budget, 2) and len(fed) > 1 and steps_before_join == len(fed) - 1
    assert len(first.generated) >= len(fed)
    for row, prompt in zip(joining, prompts[1:], strict=True):
        with adapters.active(row.adapter) as m:
            assert row.generated == _reference(m, tok, prompt), row.adapter
    with adapters.active(BASE) as m:
        assert first.generated[:len(fed) + 1] == _reference(m, tok, prompts[0], len(fed) + 1)


def test_a_row_cancelled_while_its_prompt_is_prefilled_leaves_the_others_intact(tiny):
    model, tok = tiny
    model = model.float()
    lane = Lane(lambda names, **inputs: model(**inputs), tok.pad_token_id)
    gone, kept = _row(tok, PROMPTS[2]), _row(tok, PROMPTS[0])
    lane.queue([gone, kept])
    lane.prefill(4)
    lane.remove({gone.id})
    assert lane.members == [kept]
    while lane.pending:
        lane.prefill(4)
    while not kept.finish_reason:
        lane.step()
    assert kept.generated == _reference(model, tok, PROMPTS[0]) and not gone.generated


def test_a_decode_step_writes_into_the_cache_without_copying_it(tiny):
    model, tok = tiny
    lane = Lane(lambda names, **inputs: model.float()(**inputs), tok.pad_token_id)
    lane.join([_row(tok, PROMPTS[0], n=20), _row(tok, PROMPTS[1], n=20)])
    lane.step()
    before = [layer.keys.data_ptr() for layer in lane.cache.layers]
    width = lane.cache.layers[0].keys.shape[2]
    lane.step()
    assert [layer.keys.data_ptr() for layer in lane.cache.layers] == before
    assert lane.cache.layers[0].keys.shape[2] == width + 1


def test_a_join_feeds_the_lm_head_only_each_rows_last_position_as_contiguous_rows(tiny):
    # a strided [batch, 1, hidden] view sends torch's matmul down a path that copies the LM head per row
    model, tok = tiny
    model = model.float().requires_grad_(False)
    seen = []
    hook = model.lm_head.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        lane = Lane(lambda names, **inputs: model(**inputs), tok.pad_token_id)
        rows = [_row(tok, PROMPTS[0]), _row(tok, PROMPTS[2])]
        lane.join(rows)
    finally:
        hook.remove()
    (hidden,) = seen
    assert hidden.shape[:2] == (2, 1) and hidden.is_contiguous()
    assert [r.generated[0] for r in rows] == [_reference(model, tok, p, 1)[0] for p in (PROMPTS[0], PROMPTS[2])]


def test_stop_strings_are_cut_and_never_streamed(tiny):
    _, tok = tiny
    row = _row(tok, "x", n=50, stop=["lo w"])
    pieces = [row.advance(t) for t in tok.encode(" hello world again")]
    assert "".join(pieces) == " hel" and row.finish_reason == "stop"


def test_sampling_is_seeded_and_top_p_keeps_the_nucleus():
    logits = torch.tensor([3.0, 2.9, -5.0, -6.0])
    params = SamplingParams(temperature=1.0, top_p=0.9, seed=3)
    draws = [sample_tokens(logits[None], [params], [torch.Generator().manual_seed(3)]) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    many = {sample_tokens(logits[None], [params], [torch.Generator().manual_seed(s)])[0] for s in range(50)}
    assert many == {0, 1}
    assert sample_tokens(logits[None], [SamplingParams()], [None]) == [0]


def test_one_batch_mixes_greedy_seeded_and_unseeded_rows():
    logits = torch.tensor([[3.0, 2.9, -5.0, -6.0], [-5.0, 1.0, 0.0, 0.9], [0.0, -9.0, 9.0, 9.0]] * 2)
    greedy, nucleus = SamplingParams(), SamplingParams(temperature=1.0, top_p=0.5)
    params = [greedy, nucleus, SamplingParams(temperature=0.7, seed=1)] * 2
    gens = [None, None, torch.Generator().manual_seed(1), None, None, torch.Generator().manual_seed(1)]
    tokens = sample_tokens(logits, params, gens)
    assert tokens[0] == tokens[3] == 0
    assert tokens[1] == tokens[4] == 1           # top-p 0.5 keeps only the most likely token
    assert tokens[2] == tokens[5] and tokens[2] in (2, 3)   # same seed, same draw; token 1 has ~0 mass
