"""The engine serves LoRA and DoRA adapters of one base at once, all rows in one batch (one lane);
each answer equals that adapter alone."""

import threading

import torch
from peft import LoraConfig, get_peft_model

from adaptlab.methods.multi import BASE
from adaptlab.models import tiny_llama
from adaptlab.models.decode import SamplingParams
from adaptlab.models.generation import generate
from adaptlab.serve.backend import MIXED, Backend, load_backend
from adaptlab.serve.engine import Engine


def _adapter(path, dora: bool, seed: int):
    model = get_peft_model(tiny_llama()[0].float(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                               use_dora=dora, task_type="CAUSAL_LM"))
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(path)
    return str(path)


def test_lora_and_dora_adapters_decode_together(tiny_dir, tmp_path):
    backend = load_backend(str(tiny_dir), {"lo": _adapter(tmp_path / "lo", False, 1),
                                           "do": _adapter(tmp_path / "do", True, 2)}, dtype="fp32", name="t")
    assert [backend.lane_of(a) for a in (BASE, "lo", "do")] == [MIXED] * 3
    engine = Engine(backend, max_batch=8)
    engine.start()
    prompt = backend.tokenizer.encode("The capital of France is")
    texts, done = {}, threading.Semaphore(0)

    def collect(name):
        def emit(ev):
            texts[name] = texts.get(name, "") + ev.text
            if ev.finish_reason:
                done.release()
        return emit

    for adapter in (BASE, "lo", "do"):
        engine.submit(prompt, SamplingParams(max_tokens=8, temperature=0), adapter, 1, collect(adapter))
    for _ in range(3):
        assert done.acquire(timeout=60)
    engine.stop()
    for adapter in (BASE, "lo", "do"):
        with backend.adapters.active(adapter) as model:
            assert texts[adapter] == generate(model, backend.tokenizer, ["The capital of France is"], 8)[0], adapter
    assert len(set(texts.values())) == 3


class _Recording(Backend):
    """Logs each forward's (rows, columns) and torch's thread count, and never ends a row on EOS (rows run to
    max_tokens)."""

    def forward_for(self, lane):
        inner = super().forward_for(lane)

        def forward(names, **inputs):
            self.calls.append(tuple(inputs["input_ids"].shape))
            self.threads.add(torch.get_num_threads())
            out = inner(names, **inputs)
            out.logits[..., self.tokenizer.eos_token_id] = -float("inf")
            return out
        return forward


def _recording(tiny_dir) -> _Recording:
    loaded = load_backend(str(tiny_dir), {}, dtype="fp32", name="t")
    backend = _Recording(loaded.name, loaded.model, loaded.tokenizer, loaded.adapters)
    backend.calls, backend.threads = [], set()
    return backend


def test_the_engine_thread_sets_its_own_torch_threads_and_leaves_the_callers(tiny_dir):
    backend, caller = _recording(tiny_dir), torch.get_num_threads()
    engine = Engine(backend, threads=caller + 1)
    engine.start()
    done = threading.Event()
    engine.submit(backend.tokenizer.encode("Hi"), SamplingParams(max_tokens=2), BASE, 1,
                  lambda ev: ev.finish_reason and done.set())
    assert done.wait(60)
    engine.stop()
    assert backend.threads == {caller + 1} and torch.get_num_threads() == caller
    assert Engine(backend).threads == max(1, caller - 1)


def test_a_long_prompt_joins_a_chunk_per_step_while_running_rows_keep_decoding(tiny_dir):
    backend = _recording(tiny_dir)
    chunk = 16
    engine = Engine(backend, max_batch=4, prefill_chunk=chunk)
    engine.start()
    tok = backend.tokenizer
    started, done = threading.Event(), threading.Semaphore(0)
    running_at_first_token = []

    def on_running(ev):
        if ev.finish_reason:
            done.release()
        elif len(running.rows[0].generated) >= 3:
            started.set()

    def on_long(ev):
        if not running_at_first_token:
            running_at_first_token.append(len(running.rows[0].generated))
        if ev.finish_reason:
            done.release()

    running = engine.submit(tok.encode("Once upon a time"), SamplingParams(max_tokens=60), BASE, 1, on_running)
    assert started.wait(60)
    long_prompt = tok.encode(" ".join(str(i) for i in range(200)))[:200]
    before = len(running.rows[0].generated)
    joining = engine.submit(long_prompt, SamplingParams(max_tokens=5), BASE, 1, on_long)
    for _ in range(2):
        assert done.acquire(timeout=120)
    engine.stop()
    # every forward is a decode step (one column) or a prefill chunk of at most `chunk` tokens
    assert all(cols == 1 or rows * cols <= chunk for rows, cols in backend.calls), backend.calls
    # the running row got a token for each chunk the long prompt took (give or take the step it arrived in)
    assert running_at_first_token[0] - before >= len(long_prompt) // chunk - 1
    with torch.no_grad():
        ids = torch.tensor([long_prompt])
        expected = backend.model.generate(input_ids=ids, max_new_tokens=5, min_new_tokens=5, do_sample=False,
                                         pad_token_id=tok.eos_token_id)[0, ids.shape[1]:].tolist()
    assert joining.rows[0].generated == expected
