"""The human side of RLHF end to end on the builtin SmolLM2-135M: pairs sampled from the model, votes cast
through the feedback app's HTTP API, `adaptlab feedback export`, a reward model trained on the export, and an
RLOO policy trained against that reward model whose reward rises.

The annotator is scripted and consistent (the answer with fewer words wins; equal lengths are a tie), the one
preference a 135M reward model and policy can pick up in a couple of minutes on 2 CPU cores, so the test shows
that the votes, and nothing else, steer the policy: its answers get shorter too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adaptlab.cli import app as cli
from adaptlab.config import load_config
from adaptlab.data import load_records
from adaptlab.feedback.app import create_app, csrf_token
from adaptlab.feedback.pairs import PairMaker, load_policy, read_prompts
from adaptlab.feedback.store import FeedbackStore
from adaptlab.train import train
from adaptlab.train.rewards import model_reward

PROMPTS = 48


def short_prompts(path: Path, n: int) -> Path:
    """The first `n` one-turn HH-RLHF requests under 120 characters, as a prompts file for the page."""
    rows = [{"prompt": r.prompt[0]["content"]} for r in load_records("hh-rlhf-harmless")
            if len(r.prompt) == 1 and len(r.prompt[0]["content"]) < 120][:n]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def vote_for_the_shorter(store: FeedbackStore, total: int, annotator: str = "ann") -> int:
    """Vote on every pair through the app's HTTP API as a person preferring fewer words; returns the votes."""
    client = TestClient(create_app(store, total=total))
    headers = {"X-CSRF-Token": csrf_token(store.secret(), annotator)}
    votes = 0
    while (pair := client.get("/api/next", params={"annotator": annotator}).json()["pair"]) is not None:
        a, b = len(pair["a"].split()), len(pair["b"].split())
        choice = "A" if a < b else "B" if b < a else "tie"
        r = client.post("/api/vote", json={"pair_id": pair["id"], "annotator": annotator, "choice": choice},
                        headers=headers)
        assert r.status_code == 200 and r.json()["recorded"], r.text
        votes += 1
    return votes


def human_chain(tmp_path: Path, seed: int) -> dict:
    """Every step of the chain; returns what the assertions read."""
    prompts_file = short_prompts(tmp_path / "prompts.jsonl", PROMPTS)
    store = FeedbackStore(tmp_path / "feedback.db")
    maker = PairMaker(store, read_prompts(prompts_file), [load_policy("smollm2-135m")], max_new_tokens=32,
                      temperature=1.0, batch=16, seed=seed)
    maker.run()   # in this thread: the test votes once every pair exists
    assert maker.error is None and len(store.done_prompts()) == PROMPTS
    votes = vote_for_the_shorter(store, PROMPTS)
    store.close()

    prefs = tmp_path / "prefs.jsonl"
    result = CliRunner().invoke(cli, ["feedback", "export", "--db", str(tmp_path / "feedback.db"), "--out", str(prefs)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in prefs.read_text().splitlines()]

    rm = train(load_config("examples/reward.yaml", [
        f"output_dir={tmp_path / 'reward'}", f"data.train={prefs}", "data.limit=null", "data.eval_fraction=0.0",
        "max_steps=16", "eval_every=0", "save_every=0", "seq_len=128", "optim.lr=1.0e-3", "optim.warmup_steps=2",
        f"seed={seed}"]))
    reward = model_reward(str(rm.final_dir), seq_len=128)
    chosen = reward([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    rejected = reward([r["prompt"] for r in rows], [r["rejected"] for r in rows])

    policy = train(load_config("examples/rloo.yaml", [
        f"output_dir={tmp_path / 'rloo'}", f"rloo.reward={rm.final_dir}", f"data.train={prompts_file}",
        "max_steps=10", "rloo.max_new_tokens=24", "rloo.kl_coef=0.05", "seq_len=96", f"seed={seed}"]))
    steps = [json.loads(line) for line in (policy.output_dir / "metrics.jsonl").read_text().splitlines()]
    return {"votes": votes, "rows": rows, "chosen": chosen, "rejected": rejected, "steps": steps}


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


@pytest.mark.slow
def test_votes_train_a_reward_model_and_an_rloo_policy_whose_reward_rises(tmp_path):
    out = human_chain(tmp_path, seed=0)
    assert out["votes"] == PROMPTS and len(out["rows"]) >= PROMPTS // 2   # ties are not exported
    assert all(len(r["chosen"].split()) < len(r["rejected"].split()) for r in out["rows"])
    # the reward model learned the votes: it ranks the voted pairs' chosen answer first
    ranked = mean([float(c > r) for c, r in zip(out["chosen"], out["rejected"])])
    assert ranked > 0.75, ranked
    # and the policy trained on it: its mean reward rises by a good part of the reward model's chosen-rejected
    # margin, and its answers get shorter (what the annotator wanted)
    reward = [s["reward"] for s in out["steps"]]
    margin = mean(out["chosen"]) - mean(out["rejected"])
    assert mean(reward[-3:]) - mean(reward[:3]) > 0.25 * margin, (reward, margin)
    length = [s["length"] for s in out["steps"]]
    assert mean(length[-3:]) < mean(length[:3]), length
