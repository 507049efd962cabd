"""PPO: its maths against hand-worked examples and closed forms (trl removed its PPOTrainer, so there is no
library to compare with), prompts-only data, and PPO runs on the tiny model that train the value head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adaptlab.config import load_config
from adaptlab.data.records import Prompt, RecordError
from adaptlab.data.sources import load_records
from adaptlab.train import train
from adaptlab.train.checkpoint import latest_checkpoint
from adaptlab.train.loop import Trainer
from adaptlab.train.losses import gae_advantages, kl_estimate, masked_whiten, ppo_policy_loss, ppo_value_loss
from adaptlab.train.objectives.ppo import HEAD_FILE
from adaptlab.train.objectives.rollout import CURVES_FILE, record_prompt
from tests.test_train import make_recipe

BREVITY = "adaptlab.train.rewards:brevity"


# ---- maths ----------------------------------------------------------------------------------------------------

def test_gae_hand_worked_three_tokens_and_padding():
    # gamma = 0.9, lambda = 0.5 (gamma lambda = 0.45); row 1: r = (0, 0, 1), V = (0.5, 0.4, 0.8)
    #   delta_2 = 1 + 0.9 * 0   - 0.8 =  0.2           A_2 = 0.2
    #   delta_1 = 0 + 0.9 * 0.8 - 0.4 =  0.32          A_1 = 0.32 + 0.45 * 0.2  = 0.41
    #   delta_0 = 0 + 0.9 * 0.4 - 0.5 = -0.14          A_0 = -0.14 + 0.45 * 0.41 = 0.0445
    #   returns A + V = (0.5445, 0.81, 1.0)
    # row 2 has two tokens (the third is padding holding garbage): r = (0, 2), V = (1, 1)
    #   delta_1 = 2 - 1 = 1, A_1 = 1;  delta_0 = 0 + 0.9 * 1 - 1 = -0.1, A_0 = -0.1 + 0.45 * 1 = 0.35
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    values = torch.tensor([[0.5, 0.4, 0.8], [1.0, 1.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = gae_advantages(rewards, values, mask, gamma=0.9, lam=0.5)
    torch.testing.assert_close(advantages, torch.tensor([[0.0445, 0.41, 0.2], [0.35, 1.0, 0.0]]))
    torch.testing.assert_close(returns, torch.tensor([[0.5445, 0.81, 1.0], [1.35, 2.0, 0.0]]))


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    torch.manual_seed(0)
    rewards, values = torch.randn(4, 6), torch.randn(4, 6)
    mask = (torch.arange(6)[None] < torch.tensor([6, 3, 1, 5])[:, None]).float()
    advantages, returns = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    to_go = (rewards * mask).flip(1).cumsum(1).flip(1)
    torch.testing.assert_close(advantages, (to_go - values) * mask)
    torch.testing.assert_close(returns, to_go * mask)


def test_clipped_policy_loss_binds_in_both_directions():
    # eps = 0.2:  A = +1, rho = 1.5: max(-1.5, -1.2) = -1.2 (clipped above: no gradient)
    #             A = -1, rho = 0.5: max( 0.5,  0.8) =  0.8 (clipped below: no gradient)
    #             A = +1, rho = 0.5: max(-0.5, -0.8) = -0.5 (unclipped)
    #             A = -1, rho = 1.5: max( 1.5,  1.2) =  1.5 (unclipped)
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    ratio = torch.tensor([1.5, 0.5, 0.5, 1.5])
    logp = torch.log(ratio).requires_grad_()
    loss, clipped = ppo_policy_loss(logp, torch.zeros(4), advantages, cliprange=0.2)
    torch.testing.assert_close(loss.detach(), torch.tensor([-1.2, 0.8, -0.5, 1.5]))
    assert clipped.tolist() == [True, True, False, False]
    loss.sum().backward()  # d/dlogp (-A rho) = -A rho where unclipped, 0 where the clip binds
    torch.testing.assert_close(logp.grad, torch.tensor([0.0, 0.0, -0.5, 1.5]))


def test_clipped_value_loss():
    # old V = 1, eps = 0.2, so V_clip = 1.2 for V = 1.5
    #   V = 1.5, R = 2: max((1.5 - 2)^2, (1.2 - 2)^2) / 2 = max(0.25, 0.64) / 2 = 0.32 (clipped term binds)
    #   V = 1.5, R = 1: max(0.25, 0.04) / 2 = 0.125;   V = 0.9, R = 0: within the clip, 0.81 / 2 = 0.405
    values = torch.tensor([1.5, 1.5, 0.9])
    loss, clipped = ppo_value_loss(values, torch.ones(3), torch.tensor([2.0, 1.0, 0.0]), cliprange_value=0.2)
    torch.testing.assert_close(loss, torch.tensor([0.32, 0.125, 0.405]))
    assert clipped.tolist() == [True, False, False]


def test_kl_estimators_closed_forms_and_unbiased():
    # pi(y) = 1/2, pi_ref(y) = 1/4: k1 = log 2; k3 = (1/2 - 1) - log(1/2) = log 2 - 1/2
    half, quarter = torch.tensor([0.5]).log(), torch.tensor([0.25]).log()
    torch.testing.assert_close(kl_estimate(half, quarter, "k1"), torch.tensor([0.6931472]))
    torch.testing.assert_close(kl_estimate(half, quarter, "k3"), torch.tensor([0.6931472 - 0.5]))
    assert bool((kl_estimate(torch.randn(1000), torch.randn(1000), "k3") >= 0).all())
    with pytest.raises(ValueError, match="k1"):
        kl_estimate(half, quarter, "k2")
    # sampled from pi, both average to the exact KL(pi || pi_ref); k3 with less spread
    gen = torch.Generator().manual_seed(0)
    p, q = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05]), torch.tensor([0.1, 0.3, 0.2, 0.3, 0.1])
    exact = float((p * (p / q).log()).sum())
    y = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    for kind in ("k1", "k3"):
        est = kl_estimate(p.log()[y], q.log()[y], kind)
        assert abs(float(est.mean()) - exact) < 4 * float(est.std()) / len(y) ** 0.5, kind
    assert kl_estimate(p.log()[y], q.log()[y], "k3").std() < kl_estimate(p.log()[y], q.log()[y], "k1").std()


def test_masked_whiten_uses_only_real_tokens():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, -50.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    real = torch.tensor([1.0, 2.0, 3.0, 4.0])
    expected = (real - real.mean()) / real.std()  # std with Bessel's correction, as trl
    out = masked_whiten(x, mask)
    torch.testing.assert_close(out[mask.bool()], expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(masked_whiten(x, mask, shift_mean=False)[mask.bool()], expected + real.mean(),
                               atol=1e-6, rtol=1e-6)


# ---- prompts-only data ----------------------------------------------------------------------------------------

def test_prompt_rows_load_from_every_file_format(tmp_path):
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "Why?"}) + "\n" + json.dumps({"prompt": turns}) + "\n")
    (tmp_path / "p.json").write_text(json.dumps([{"prompt": "Why?"}]))
    (tmp_path / "p.csv").write_text("prompt\nWhy?\n")
    assert load_records(str(tmp_path / "p.jsonl")) == [Prompt("Why?"), Prompt(turns)]
    assert load_records(str(tmp_path / "p.json")) == load_records(str(tmp_path / "p.csv")) == [Prompt("Why?")]
    import pandas as pd

    pd.DataFrame({"prompt": ["Why?"]}).to_parquet(tmp_path / "p.parquet")
    assert load_records(str(tmp_path / "p.parquet")) == [Prompt("Why?")]
    assert record_prompt(Prompt(turns)) == turns
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": 3}) + "\n")
    with pytest.raises(RecordError, match=r"bad.jsonl:2: field 'prompt' must be text"):
        load_records(str(tmp_path / "bad.jsonl"))


@pytest.mark.parametrize("objective", ["sft", "dpo", "reward"])
def test_prompts_only_data_is_refused_by_objectives_that_need_responses(tmp_path, tiny_dir, objective):
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": f"Q{i}"}) + "\n" for i in range(4)))
    cfg = load_config(make_recipe(tmp_path, tiny_dir, objective=objective, max_steps=1,
                                  data={"train": str(tmp_path / "prompts.jsonl"), "eval_fraction": 0.0}))
    with pytest.raises(ValueError, match=f"objective {objective} learns from given responses.*4 of 4 records"):
        train(cfg)


# ---- runs on the tiny model -----------------------------------------------------------------------------------

def ppo_recipe(tmp_path: Path, tiny_dir: Path, max_steps: int = 3, **ppo) -> Path:
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": f"Tell me about the number {i}."}) + "\n"
                                                    for i in range(8)))
    path = make_recipe(tmp_path, tiny_dir, objective="ppo", max_steps=max_steps, save_every=2, eval_every=0,
                       seq_len=64, batch_size=2, optim={"lr": 3e-3, "warmup_steps": 0, "schedule": "constant"},
                       data={"train": str(tmp_path / "prompts.jsonl"), "eval_fraction": 0.25, "eval_max": 2})
    recipe = json.loads(path.read_text())
    recipe["ppo"] = {"reward": BREVITY, "k": 2, "max_new_tokens": 8, **ppo}
    assert recipe["method"].get("dropout", 0.0) == 0.0  # pi_old is the first forward: the first ratio is exactly 1
    path.write_text(json.dumps(recipe))
    return path


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_ppo_run_trains_the_value_head_and_checkpoints_it(tmp_path, tiny_dir):
    result = train(load_config(ppo_recipe(tmp_path, tiny_dir, max_steps=4, ppo_epochs=2, kl_estimator="k3")))
    rows = metrics(result.output_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert 0.0 <= row["reward"] <= 1.0 and 1 <= row["length"] <= 8 and row["entropy"] > 0
        assert row["value_loss"] >= 0 and row["kl"] >= 0  # k3 is never negative
    assert rows[0]["clipfrac"] == 0.0 and rows[2]["clipfrac"] == 0.0   # the first step of a rollout: ratio 1
    assert rows[0]["kl"] < 1e-4                      # the first rollout comes from the reference policy itself
    assert rows[1]["reward"] == rows[0]["reward"]    # steps 1-2 share a rollout (ppo_epochs = 2); 3-4 another
    assert "eval_reward" in rows[-1]
    saved = load_file(latest_checkpoint(result.output_dir) / "trainable.safetensors")
    head = {k: v for k, v in saved.items() if "value_head" in k}
    assert head and any(float(v.abs().max()) > 0 for v in head.values())   # it starts at zero
    assert any("lora_B" in k and float(v.abs().max()) > 0 for k, v in saved.items())
    final = load_file(result.final_dir / HEAD_FILE)
    torch.testing.assert_close(final["weight"], next(v for k, v in head.items() if k.endswith("weight")))
    assert (result.output_dir / CURVES_FILE).stat().st_size > 1000


def test_a_resumed_ppo_run_restores_the_value_head(tmp_path, tiny_dir):
    recipe = ppo_recipe(tmp_path, tiny_dir, max_steps=2)
    first = train(load_config(recipe))
    saved = load_file(latest_checkpoint(first.output_dir) / "trainable.safetensors")
    head_at_2 = next(v for k, v in saved.items() if "value_head" in k and k.endswith("weight"))
    assert float(head_at_2.abs().max()) > 0
    trainer = Trainer(load_config(recipe, ["max_steps=3"]), resume=True)
    trainer.setup()
    for logger in trainer.loggers:
        logger.close()
    assert trainer.start_step == 2
    torch.testing.assert_close(trainer.model.value_head.weight.detach(), head_at_2)


def test_ppo_without_a_reward_is_a_clear_error(tmp_path, tiny_dir):
    cfg = load_config(ppo_recipe(tmp_path, tiny_dir), ["ppo.reward=null"])
    with pytest.raises(ValueError, match="objective ppo needs a reward.*ppo.reward"):
        train(cfg)
