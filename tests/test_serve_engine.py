"""The engine serves LoRA and DoRA adapters of one base at once, all rows in one batch (one lane);
each answer equals that adapter alone."""

import threading

import torch
from peft import LoraConfig, get_peft_model

from adaptlab.methods.multi import BASE
from adaptlab.models import tiny_llama
from adaptlab.models.decode import SamplingParams
from adaptlab.models.generation import generate
from adaptlab.serve.backend import MIXED, load_backend
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
