"""The preference recipes on the builtin 135M model, shortened to a few steps (slow): the reward model logs its
eval accuracy and loads as a reward function; DPO raises the margin on pairs it trains on and caches its
reference log-probs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
# 4 steps of 2 pairs from the first 16 HH pairs; eval on the first 8 of them (pairs the run trains on)
SHORT = ("max_steps=4", "eval_every=2", "data.limit=16", "data.eval=hh-rlhf-harmless", "data.eval_max=8",
         "batch_size=2", "seq_len=192", "optim.lr=2e-4", "optim.warmup_steps=0")


def run_recipe(recipe: str, out: Path, *overrides: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "adaptlab.cli", "train", recipe, f"output_dir={out}", *overrides],
                          capture_output=True, text=True, timeout=880, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_reward_recipe_logs_accuracy_and_scores(tmp_path):
    from adaptlab.data import load_records
    from adaptlab.train.rewards import load_reward

    rows = run_recipe("examples/reward.yaml", tmp_path / "rm", *SHORT)
    assert 0.0 <= rows[-1]["eval_accuracy"] <= 1.0 and "eval_margin" in rows[-1]
    pair = load_records("hh-rlhf-harmless", limit=1)[0]
    scores = load_reward(str(tmp_path / "rm" / "final"))([pair.prompt[-1]["content"]] * 2, [pair.chosen, pair.rejected])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores) and scores[0] != scores[1]


def test_dpo_recipe_raises_the_margin(tmp_path):
    rows = run_recipe("examples/dpo.yaml", tmp_path / "dpo", *SHORT)
    evals = [r for r in rows if "eval_margin" in r]
    assert len(evals) == 2 and evals[-1]["eval_margin"] > evals[0]["eval_margin"]
    assert (tmp_path / "dpo" / "final" / "adapter_model.safetensors").exists()
    assert list((tmp_path / "dpo" / "reference").glob("*.safetensors"))
