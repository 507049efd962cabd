"""Online RL on the tiny model: RLOO advantages equal trl 1.16's on the same rewards, a hand-worked
example, the builtin brevity reward, rollouts, and an RLOO run that moves the weights and logs its curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.data.records import Chat, Instruction, Preference
from adaptlab.train import train
from adaptlab.train.losses import rloo_advantages
from adaptlab.train.objectives import get_objective
from adaptlab.train.objectives.rollout import CURVES_FILE, Curves, prompt_batches, record_prompt, rollout
from adaptlab.train.rewards import brevity, load_reward
from tests.test_train import final_weights, make_recipe

BREVITY = "adaptlab.train.rewards:brevity"


def trl_rloo_advantages(rewards: torch.Tensor, k: int, normalize: bool) -> torch.Tensor:
    """trl 1.16 `RLOOTrainer._generate_and_score_completions` (trl/trainer/rloo_trainer.py), its advantage
    lines verbatim (inline there, not callable alone), with trl's own `nanstd`."""
    from trl.trainer.utils import nanstd

    grouped_rewards = rewards.view(-1, k)
    scorable_counts = (~torch.isnan(grouped_rewards)).sum(dim=1, keepdim=True)
    grouped_sum = torch.nansum(grouped_rewards, dim=1, keepdim=True)
    baselines = (grouped_sum - grouped_rewards) / (scorable_counts - 1)
    advantages = rewards - baselines.view(-1)
    if normalize:
        advantages = (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


@pytest.mark.parametrize("k", [2, 4, 8])
@pytest.mark.parametrize("normalize", [False, True])
def test_rloo_advantages_equal_trl(k, normalize):
    torch.manual_seed(k)
    rewards = torch.randn(6 * k) * 3 + 1
    ours = rloo_advantages(rewards, k, normalize)
    torch.testing.assert_close(ours, trl_rloo_advantages(rewards, k, normalize), rtol=0, atol=1e-5)


def test_rloo_advantages_hand_worked():
    # group (1, 2, 3, 6): baselines (2+3+6)/3, (1+3+6)/3, (1+2+6)/3, (1+2+3)/3; group (5, 5, 5, 5): all zero
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0])
    expected = torch.tensor([1 - 11 / 3, 2 - 10 / 3, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(rloo_advantages(rewards, 4), expected)
    assert abs(float(rloo_advantages(rewards, 4).view(-1, 4).sum(1).abs().max())) < 1e-6  # zero-sum per group
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(rewards, 1)


def test_brevity_reward_is_loadable_and_prefers_short_answers():
    fn = load_reward(BREVITY)
    assert fn is brevity
    assert fn(["q"] * 3, ["", "one two three four", " ".join(["w"] * 40)]) == [1.0, 0.75, 0.0]


def test_a_reward_loads_from_a_python_file(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text("def shouty(prompts, completions):\n"
                                            "    return [float(c.isupper()) for c in completions]\n")
    monkeypatch.chdir(tmp_path)   # a relative file is read from the working directory, as a recipe's data
    assert load_reward("my_rewards.py:shouty")(["q", "q"], ["YES", "no"]) == [1.0, 0.0]
    with pytest.raises(TypeError, match="no callable 'missing'"):
        load_reward("my_rewards.py:missing")
    with pytest.raises(FileNotFoundError, match="other.py"):
        load_reward("other.py:shouty")


def test_the_example_reward_file_prefers_short_answers():
    fn = load_reward(str(Path(__file__).parents[1] / "examples" / "rl_rewards.py") + ":concise")
    scores = fn(["q"] * 3, ["", "Paris.", " ".join(["word"] * 40)])
    assert scores[0] == 1.0 and 0.0 < scores[1] < 1.0 and scores[2] == 0.0


def test_prompts_from_every_record_kind(tiny):
    _, tok = tiny
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert record_prompt(Preference("Why?", "a", "b")) == "Why?"
    assert record_prompt(Instruction("Sum", "", "2 3")) == "Sum\n\n2 3"
    assert record_prompt(Chat(turns)) == turns[:1]
    (batch,) = prompt_batches([Preference("Why?", "a", "b"), Instruction("Say hi", "")], tok, 2, 8)
    assert len(batch.ids) == 2 and all(0 < len(ids) <= 8 for ids in batch.ids)  # long prompts keep their end
    assert tok.decode(prompt_batches([Instruction("Say hi", "")], tok, 1, 64)[0].ids[0]).rstrip().endswith("assistant")


def test_rollout_samples_k_per_prompt_and_matches_the_reference_before_training(tiny):
    model, tok = tiny
    (batch,) = prompt_batches([Instruction("Count", ""), Instruction("Name a colour", "")], tok, 2, 32)
    torch.manual_seed(0)
    roll = rollout(model, model, tok, batch, brevity, k=3, max_new_tokens=6, temperature=1.0, seq_len=64)
    assert roll.rewards.shape == roll.ref_logps.shape == (6,)
    assert all(1 <= n <= 6 for n in roll.batch.lengths.tolist())
    assert batch.rollout_tokens == int(roll.batch.rows.n_real_tokens)
    assert bool((roll.ref_logps < 0).all())


def rl_recipe(tmp_path: Path, tiny_dir: Path, method: str, **rloo) -> Path:
    prompts = [{"instruction": f"Tell me about the number {i}.", "output": ""} for i in range(8)]
    path = make_recipe(tmp_path, tiny_dir, objective="rloo", max_steps=2, save_every=2, eval_every=0, seq_len=64,
                       batch_size=2, method={"name": method, "r": 4, "alpha": 8} if method == "lora" else {"name": method},
                       data={"train": str(tmp_path / "prompts.jsonl"), "eval_fraction": 0.25, "eval_max": 2})
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    recipe = json.loads(path.read_text())
    recipe["rloo"] = {"k": 2, "max_new_tokens": 8, **rloo}
    path.write_text(json.dumps(recipe))
    return path


@pytest.mark.parametrize(("method", "kl_estimator"), [("lora", "k1"), ("full", "k3")])
def test_an_rloo_run_moves_the_weights_and_logs_its_curves(tmp_path, tiny_dir, method, kl_estimator):
    cfg = load_config(rl_recipe(tmp_path, tiny_dir, method, reward=BREVITY, kl_estimator=kl_estimator))
    result = train(cfg)
    rows = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert 0.0 <= row["reward"] <= 1.0 and 1 <= row["length"] <= 8 and row["entropy"] > 0
        assert kl_estimator == "k1" or row["kl"] >= 0  # k3 is never negative
    assert abs(rows[0]["kl"]) < 1e-4  # the first rollout comes from the untouched policy: it is the reference
    assert 0.0 <= rows[-1]["eval_reward"] <= 1.0 and "eval_reward" not in rows[0]  # held-out prompts, at the end
    assert (result.output_dir / CURVES_FILE).stat().st_size > 1000
    weights = final_weights(result.output_dir)
    if method == "lora":  # B starts at zero: any trained update makes it non-zero
        assert any(float(w.abs().max()) > 0 for name, w in weights.items() if "lora_B" in name)
    else:
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()
        assert not torch.equal(weights["model.embed_tokens.weight"], base["model.embed_tokens.weight"])


def test_rloo_without_a_reward_is_a_clear_error(tmp_path, tiny_dir):
    cfg = load_config(rl_recipe(tmp_path, tiny_dir, "lora"))
    with pytest.raises(ValueError, match="objective rloo needs a reward.*rloo.reward"):
        train(cfg)


def test_rloo_draws_its_curves_only_when_the_loop_asks(tmp_path):
    rloo = get_objective("rloo")
    rloo.curves = Curves(tmp_path)
    one = torch.ones(2)
    rloo.stats.add(True, reward=one, kl=one, length=one, entropy=one)
    assert rloo.pop_stats()["reward"] == 1.0
    assert not (tmp_path / CURVES_FILE).exists()   # a step alone draws nothing
    rloo.draw()                                    # the loop: main process, at evaluations, saves and the end
    assert (tmp_path / CURVES_FILE).stat().st_size > 1000
