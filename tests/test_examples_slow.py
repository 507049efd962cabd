"""The README's main command and the builtin model, end to end (slow: needs the 135M model)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_builtin_model_loads_fast_from_its_cache():
    from adaptlab.models import load_model

    load_model("smollm2-135m")  # converts once if the cache is cold
    t0 = time.perf_counter()
    loaded = load_model("smollm2-135m")
    assert time.perf_counter() - t0 < 5.0
    assert sum(p.numel() for p in loaded.model.parameters()) == 134_515_008
    assert loaded.tokenizer.chat_template and loaded.tokenizer.eos_token == "<|im_end|>"


def test_readme_main_command_trains_and_eval_loss_falls(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "adaptlab.cli", "train", "examples/sft-lora.yaml",
                           f"output_dir={out}", "max_steps=12", "eval_every=6", "data.eval_max=16"],
                          check=False, capture_output=True, text=True, timeout=880)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    evals = [json.loads(x)["eval_loss"] for x in (out / "metrics.jsonl").read_text().splitlines() if "eval_loss" in x]
    assert len(evals) == 2 and evals[-1] < evals[0]
    assert (out / "final" / "adapter_model.safetensors").exists()
    assert "run finished" in proc.stdout
