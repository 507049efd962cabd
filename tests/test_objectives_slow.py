"""The preference recipes on the builtin 135M model, shortened (slow): the reward model's held-out accuracy and
DPO's held-out margin are logged and move the right way; the reward model loads as a reward function."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def run_recipe(recipe: str, out: Path, *overrides: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "adaptlab.cli", "train", recipe, f"output_dir={out}", *overrides],
                          capture_output=True, text=True, timeout=880)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_reward_recipe_learns_and_scores(tmp_path):
    from adaptlab.data import load_records
    from adaptlab.train.rewards import load_reward

    rows = run_recipe("examples/reward.yaml", tmp_path / "rm", "max_steps=8", "eval_every=8", "data.eval_max=32",
                      "batch_size=4", "seq_len=256")
    assert rows[-1]["eval_accuracy"] >= 0.5 and rows[-1]["loss"] < rows[0]["loss"]
    pair = load_records("hh-rlhf-harmless", limit=1)[0]
    scores = load_reward(str(tmp_path / "rm" / "final"))([pair.prompt[-1]["content"]] * 2, [pair.chosen, pair.rejected])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)


def test_dpo_recipe_raises_the_margin(tmp_path):
    rows = run_recipe("examples/dpo.yaml", tmp_path / "dpo", "max_steps=8", "eval_every=4", "data.eval_max=16",
                      "batch_size=4", "seq_len=256")
    evals = [r for r in rows if "eval_margin" in r]
    assert len(evals) == 2 and evals[-1]["eval_margin"] > evals[0]["eval_margin"]
    assert (tmp_path / "dpo" / "final" / "adapter_model.safetensors").exists()
    assert list((tmp_path / "dpo" / "reference").glob("*.safetensors"))
