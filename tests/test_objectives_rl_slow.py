"""examples/rloo.yaml and examples/ppo.yaml on the builtin SmolLM2-135M, shortened: the mean reward of the last
steps is above the first steps' while the KL to the reference stays bounded; an RLOO-trained adapter evaluates
with `adaptlab eval` like any other."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from adaptlab.config import load_config
from adaptlab.train import train
from adaptlab.train.objectives.rollout import CURVES_FILE

pytestmark = pytest.mark.slow

STEPS = 12
EDGE = 4        # steps averaged at each end (PPO: two rollouts, each logged on its 2 epochs)
RISE = 0.08     # the concise reward (0..1) gains at least this much between the first and last EDGE steps
KL_MAX = 10.0   # nats per answer of <= 24 tokens
# one seed measured at 12 steps (first 4 -> last 4 steps): RLOO 0.242 -> 0.478 (KL max 4.5), PPO 0.253 -> 0.384
# (KL max 3.3)


def run(recipe: str, out, *overrides: str) -> list[dict]:
    """Train `recipe` shortened to STEPS steps into `out`; its training rows."""
    result = train(load_config(recipe, [f"output_dir={out}", f"max_steps={STEPS}", f"save_every={STEPS}",
                                        *overrides]))
    assert (result.output_dir / CURVES_FILE).exists()
    return [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]


def assert_reward_rises_with_bounded_kl(rows: list[dict]) -> None:
    reward = [r["reward"] for r in rows]
    first, last = sum(reward[:EDGE]) / EDGE, sum(reward[-EDGE:]) / EDGE
    assert len(rows) == STEPS and last > first + RISE, reward
    assert max(r["kl"] for r in rows) < KL_MAX, [r["kl"] for r in rows]


@pytest.fixture(scope="module")
def rloo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rloo") / "run"
    return out, run("examples/rloo.yaml", out)


def test_rloo_recipe_raises_the_reward_with_bounded_kl(rloo_run):
    assert_reward_rises_with_bounded_kl(rloo_run[1])


def test_an_rloo_trained_adapter_evaluates_like_any_other(rloo_run, tmp_path):
    report = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "adaptlab.cli", "eval", "--adapter", str(rloo_run[0] / "final"),
                           "--tasks", "examples/eval-capitals.yaml", "--limit", "4", "-o", str(report)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads(report.read_text())
    assert payload["adapter"] == str(rloo_run[0] / "final")
    assert list(payload["results"]) == ["capitals"] and "error" not in payload["results"]["capitals"], payload


def test_ppo_recipe_raises_the_reward_with_bounded_kl(tmp_path):
    rows = run("examples/ppo.yaml", tmp_path / "run")
    assert_reward_rises_with_bounded_kl(rows)
    assert max(r["clipfrac"] for r in rows) > 0, [r["clipfrac"] for r in rows]   # ppo_epochs 2: the ratio moves
    assert (tmp_path / "run" / "final" / "value_head.safetensors").exists()
