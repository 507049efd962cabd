"""The memory planner: parameter counts from config.json, per-method trainable counts, the activation model,
and `adaptlab plan` (tiny models and shipped configs only; the check against real runs is test_plan_slow.py)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.memplan.estimate import Settings, activation_bytes, estimate
from adaptlab.memplan.methods import COSTS, method_cost
from adaptlab.memplan.shapes import ModelConfigError, load_shape, shape_from_config
from adaptlab.methods import METHODS, MethodConfig, get_method
from adaptlab.registry import UnknownNameError
from adaptlab.train.speed import mixed_precision

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 1000}
CONFIGS = {
    "llama tied, GQA": dict(model_type="llama", num_key_value_heads=2, tie_word_embeddings=True, **TINY),
    "llama untied, biases": dict(model_type="llama", attention_bias=True, mlp_bias=True, tie_word_embeddings=False, **TINY),
    "qwen2 (qkv bias), GQA, tied": dict(model_type="qwen2", num_key_value_heads=1, tie_word_embeddings=True, **TINY),
    "qwen3 (q/k norms), head_dim": dict(model_type="qwen3", num_key_value_heads=2, head_dim=32, **TINY),
    "mistral": dict(model_type="mistral", num_key_value_heads=2, **TINY),
}


def _model(config: dict):
    cfg = AutoConfig.for_model(**config)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg)


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_count_equals_the_instantiated_model(name):
    config = CONFIGS[name]
    model = _model(config)
    shape = shape_from_config(config, name)
    assert shape.total_params == sum(p.numel() for p in model.parameters())   # a tied head is counted once
    linear = sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
                 and not (shape.tied and n == "lm_head"))
    assert shape.linear_params == linear


def test_shipped_configs_match_the_published_sizes():
    # the totals the model cards and papers state
    assert load_shape("qwen2.5-0.5b").total_params == 494_032_768
    assert load_shape("llama-3.1-8b").total_params == 8_030_261_248
    assert load_shape("llama-3.1-70b").total_params == 70_553_706_496
    assert load_shape("mistral-7b").total_params == 7_248_023_552


def test_every_registered_method_has_a_cost_model():
    assert set(COSTS) == set(METHODS)
    with pytest.raises(UnknownNameError, match="lora"):
        method_cost("lorax")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_trainable_count_and_base_bytes_equal_the_real_method(tiny, method):
    model, _ = tiny
    cfg = MethodConfig(name=method, r=4, group_size=16)  # qalora: r <= 64 inputs / 16 per group
    wrapped = get_method(method).apply(copy.deepcopy(model), cfg)
    real = get_method(method).footprint(wrapped)
    shape = shape_from_config(model.config.to_dict(), "tiny")
    cost = method_cost(method)
    assert cost.trainable(shape, cfg) == real.trainable_params
    if not cost.full:  # the tiny model is fp32: the frozen base in bytes, low-bit codes and constants included
        assert cost.base_bytes(shape, cfg, 4) == pytest.approx(real.base_bytes, rel=0.01)


def _saved_bytes_per_layer_token(method: str, dtype: torch.dtype, tokens: int = 64) -> float:
    """What autograd saves for one decoder layer per token (a 3-layer minus a 1-layer model), without the
    per-layer constant (full fine-tuning's bf16 weight copies)."""
    def saved(layers: int, n: int) -> int:
        config = dict(CONFIGS["llama tied, GQA"], num_hidden_layers=layers, hidden_size=128, intermediate_size=384)
        model = _model(config)
        cfg = MethodConfig(name=method, r=4, group_size=16)
        model = get_method(method).apply(model if method == "full" else model.to(dtype), cfg)
        own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        storages: dict[int, int] = {}
        alive = []  # held, so no saved storage is freed and its address reused while counting

        def pack(t):
            alive.append(t)
            if t.untyped_storage().data_ptr() not in own:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        body = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), mixed_precision(model, "cpu", dtype):
            body(input_ids=torch.randint(0, 1000, (1, n)), use_cache=False)
        return sum(storages.values())
    per_layer = [(saved(3, n) - saved(1, n)) / 2 for n in (tokens, 2 * tokens)]
    return (per_layer[1] - per_layer[0]) / tokens


@pytest.mark.parametrize(("method", "dtype"), [("full", torch.float32), ("lora", torch.float32)]
                         + [(m, torch.bfloat16) for m in ("full", "lora", "dora", "ia3", "qalora")])  # qlora, loftq: lora's
def test_activation_model_matches_what_autograd_saves(method, dtype):
    shape = shape_from_config(dict(CONFIGS["llama tied, GQA"], hidden_size=128, intermediate_size=384), "tiny")
    cost = method_cost(method)
    compute = 2 if dtype == torch.bfloat16 else 4
    cfg = MethodConfig(name=method, r=4, group_size=16)
    predicted = activation_bytes(shape, cost.full, compute) + cost.extra_per_token(shape, cfg, compute)
    assert predicted == pytest.approx(_saved_bytes_per_layer_token(method, dtype), rel=0.1)


def test_estimate_parts_follow_the_switches():
    shape = load_shape("llama-3.1-8b")
    base = estimate(shape, "lora", Settings(seq_len=2048, batch_size=4))
    ckpt = estimate(shape, "lora", Settings(seq_len=2048, batch_size=4, activation_checkpointing=True))
    assert ckpt.parts_mb["activations"] < base.parts_mb["activations"] / 5
    assert ckpt.flops > base.flops                                       # one more forward
    full = estimate(shape, "full", Settings(seq_len=2048, batch_size=4))
    assert full.parts_mb["optimizer"] == pytest.approx(8 * shape.total_params / 2**20)
    assert full.flops == pytest.approx(1.5 * base.flops, rel=0.05)      # 6N vs 4N per token (+ attention)
    paged = estimate(shape, "qlora", Settings(), device_type="cuda")
    assert paged.optimizer == "paged_adamw8bit" and estimate(shape, "qlora", Settings()).optimizer == "adamw"
    assert estimate(shape, "qlora", Settings()).parts_mb["weights"] < base.parts_mb["weights"] / 3


def test_plan_command_renders_every_method_and_what_fits():
    result = CliRunner().invoke(app, ["plan", "--model", "llama-3.1-8b", "--seq", "512", "--batch", "1",
                                      "--memory-gb", "24", "--gflops", "1000", "--dtype", "bf16"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in METHODS:
        assert name in result.output
    fits = result.output.split("fits:")[-1]
    assert "qlora" in fits and "full" not in fits


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--method", "lorax"], "unknown method 'lorax'"),
    (["--optimizer", "sgd", "--method", "lora"], "unknown optimizer 'sgd'"),
])
def test_plan_command_bad_input_is_one_clear_line(args, message):
    result = CliRunner().invoke(app, ["plan", "--model", "qwen2.5-0.5b", "--gflops", "100", *args])
    assert result.exit_code == 2 and message in result.output


def test_config_files_directories_and_errors(tmp_path, monkeypatch):
    config = dict(CONFIGS["mistral"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert load_shape(str(tmp_path)).total_params == load_shape(str(tmp_path / "config.json")).total_params
    (tmp_path / "bad.json").write_text('{"model_type": "llama",\n "hidden_size": }')
    with pytest.raises(ModelConfigError, match="bad.json:2"):
        load_shape(str(tmp_path / "bad.json"))
    (tmp_path / "gpt2.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelConfigError, match="supported: llama"):
        load_shape(str(tmp_path / "gpt2.json"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelConfigError, match="cannot be reached"):
        load_shape("some-org/not-cached-model")
