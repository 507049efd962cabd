"""Speed switches on the tiny model: native dtype per CPU kind, compiled decoder layers and activation
checkpointing leave the loss unchanged, and a long run says at start how long it will take."""

from __future__ import annotations

import copy
import functools
import json
import logging

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.models import device as dev
from adaptlab.train import loop, speed
from adaptlab.train.loop import Trainer
from tests.test_train import make_recipe


@pytest.mark.parametrize("flags, kind, dtype", [
    ("fpu avx2 avx512f amx_bf16 avx512_bf16", "amx", torch.bfloat16),
    ("fpu avx2 avx512f avx512_bf16", "avx512_bf16", torch.bfloat16),
    ("fpu avx2 avx512f", "avx512", torch.float32),
    ("fpu avx avx2 fma", "avx2", torch.float32),
])
def test_auto_dtype_is_bf16_only_where_the_cpu_computes_it(monkeypatch, flags, kind, dtype):
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset(flags.split()))
    dev.cpu_kind.cache_clear()
    try:
        assert dev.cpu_kind() == kind
        assert dev.auto_dtype("auto", torch.device("cpu")) == dtype
        assert dev.auto_dtype("fp32", torch.device("cpu")) == torch.float32
    finally:
        dev.cpu_kind.cache_clear()


def test_the_cpu_kind_can_be_forced_and_a_wrong_name_lists_the_kinds(monkeypatch):
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset("fpu avx2 avx512f avx512_bf16".split()))
    dev.cpu_kind.cache_clear()
    try:
        monkeypatch.setenv("ADAPTLAB_CPU_KIND", "avx2")
        assert dev.cpu_kind() == "avx2" and dev.auto_dtype("auto", torch.device("cpu")) == torch.float32
        dev.cpu_kind.cache_clear()
        monkeypatch.setenv("ADAPTLAB_CPU_KIND", "avx3")
        with pytest.raises(ValueError, match="avx512_bf16, avx512, avx2"):
            dev.cpu_kind()
    finally:
        dev.cpu_kind.cache_clear()


def test_compile_auto_follows_the_measured_kinds(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(speed, "COMPILE_FASTER", frozenset({dev.cpu_kind()}))
    assert speed.want_compile("auto", cpu) is True
    monkeypatch.setattr(speed, "COMPILE_FASTER", frozenset())
    assert speed.want_compile("auto", cpu) is False
    assert speed.want_compile(True, cpu) is True and speed.want_compile(False, cpu) is False


def test_eta_message_only_for_long_runs():
    assert speed.eta_message(1.0, 100) is None  # 100 s: under the 3-minute threshold
    assert speed.eta_message(8.4, 99) == "about 14 min for the 99 steps left (8.4 s/step measured)"
    assert speed.eta_message(40.0, 180).startswith("about 2.0 h")


def losses(tmp_path, tiny_dir, steps: int = 3, **overrides) -> tuple[list[float], Trainer]:
    tmp_path.mkdir()
    cfg = load_config(make_recipe(tmp_path, tiny_dir, max_steps=steps, **overrides))
    trainer = Trainer(cfg)
    trainer.setup()
    return [trainer.train_step(s)[0] for s in range(steps)], trainer


@pytest.mark.parametrize("method, mode", [("lora", True), ("full", True), ("lora", "alternate")])
def test_activation_checkpointing_keeps_the_loss(tmp_path, tiny_dir, method, mode):
    eager, _ = losses(tmp_path / "a", tiny_dir, method__name=method, compile=False)
    ckpt, trainer = losses(tmp_path / "b", tiny_dir, method__name=method, compile=False, activation_checkpointing=mode)
    layers = speed.decoder_layers(trainer.model)
    assert trainer.speed == {"compiled": False, "activation_checkpointing": mode, "packed_attention": True,
                             "fused": {"rms_norm": 2 * len(layers) + 1, "swiglu": len(layers)}}
    recomputing = [bool(layer.gradient_checkpointing) for layer in layers]
    assert recomputing == ([True, False] * len(layers))[:len(layers)] if mode == "alternate" else all(recomputing)
    torch.testing.assert_close(torch.tensor(ckpt), torch.tensor(eager), rtol=1e-5, atol=1e-6)
    manifest = json.loads((trainer.out / "manifest.json").read_text())
    assert manifest["speed"]["activation_checkpointing"] == mode


@pytest.mark.slow  # inductor generates and builds C++: ~40 s idle, minutes on a loaded machine
def test_compiled_layers_match_eager(tmp_path, tiny_dir):
    eager, _ = losses(tmp_path / "a", tiny_dir, compile=False)
    compiled, trainer = losses(tmp_path / "b", tiny_dir, compile=True)
    assert trainer.speed["compiled"] is True and trainer.speed["packed_attention"] is False  # keeps the mask
    assert all(hasattr(layer, "_compiled_call_impl") and layer._compiled_call_impl for layer in
               speed.decoder_layers(trainer.model))
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-4, atol=1e-5)


def test_a_long_run_logs_its_estimated_time(tmp_path, tiny_dir, monkeypatch, caplog):
    monkeypatch.setattr(loop, "eta_message", functools.partial(speed.eta_message, over_seconds=0.0))
    cfg = load_config(make_recipe(tmp_path, tiny_dir, max_steps=3, eval_every=0, save_every=0, compile=False))
    with caplog.at_level(logging.INFO, logger="adaptlab.train.loop"):
        Trainer(cfg).run()
    etas = [r.getMessage() for r in caplog.records if "steps left" in r.getMessage()]
    assert len(etas) == 1 and "for the 2 steps left" in etas[0]


def test_mixed_precision_skips_the_adapter_round_trip_and_keeps_the_loss(tiny):
    from peft import LoraConfig, get_peft_model

    model, _ = tiny
    peft_model = get_peft_model(copy.deepcopy(model).to(torch.bfloat16), LoraConfig(r=4, target_modules=["q_proj"]))
    peft_model.base_model.model.model.layers[0].self_attn.q_proj.lora_B.default.weight.data.normal_()
    ids = torch.randint(0, 1000, (1, 24))
    results = []
    for context in (torch.autocast("cpu", dtype=torch.bfloat16), speed.mixed_precision(peft_model, "cpu", torch.bfloat16)):
        peft_model.zero_grad()
        with context:
            flags = {m.cast_input_dtype_enabled for m in peft_model.modules() if hasattr(m, "cast_input_dtype_enabled")}
            loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        grad = next(p.grad for n, p in peft_model.named_parameters() if "lora_A" in n)
        results.append((flags, loss.detach().float(), grad.clone()))
    assert results[0][0] == {True} and results[1][0] == {False}
    torch.testing.assert_close(results[1][1], results[0][1])
    torch.testing.assert_close(results[1][2], results[0][2])
    assert all(m.cast_input_dtype_enabled for m in peft_model.modules() if hasattr(m, "cast_input_dtype_enabled"))
