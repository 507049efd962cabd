"""GGUF export of the builtin 135M model with a LoRA adapter, read back by transformers (slow: ~1 min idle)."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from adaptlab.methods import MethodConfig, get_method
from adaptlab.methods.artifact import save_artifact
from adaptlab.methods.export import GGUF_TOLERANCE, export
from adaptlab.models import load_model


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_builtin_model_gguf_round_trip(tmp_path, quant):
    loaded = load_model("smollm2-135m", dtype="fp32")
    model = get_peft_model(loaded.model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    run = save_artifact(model, loaded.tokenizer, get_method("lora"), MethodConfig(r=8, target_modules=["q_proj", "v_proj"]),
                        "smollm2-135m", tmp_path / "run" / "final")
    report = export(run, "gguf", tmp_path / "out.gguf", quant)
    print(f"{quant}: max |drift| {report.drift.max_abs:.4f}, mean {report.drift.mean_abs:.5f}, {report.drift.tokens} tokens")
    assert report.drift.max_abs < GGUF_TOLERANCE[quant]
