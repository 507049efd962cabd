"""compare's budgeted trainer on the tiny random model: it times its first steps, keeps them, trains for
its seconds and aims the learning-rate schedule at the step count it chose."""

import pytest

from adaptlab.compare.budgeted import BudgetedTrainer, SetupError
from adaptlab.compare.planner import steps_for
from adaptlab.config import TrainConfig
from tests.conftest import write_jsonl


def _cfg(tiny_dir, tmp_path, r=2):
    rows = [{"instruction": f"say {i}", "output": f"{i} {i}"} for i in range(40)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    return TrainConfig.model_validate({
        "model": str(tiny_dir), "method": {"name": "lora", "r": r}, "max_steps": 2, "seq_len": 128, "batch_size": 2,
        "save_every": 0, "eval_every": 0, "loggers": ["jsonl"], "data": {"train": str(tmp_path / "train.jsonl")},
        "optim": {"lr": 1e-3, "warmup_steps": 0, "schedule": "linear"}, "output_dir": str(tmp_path / "run")})


@pytest.mark.parametrize("seconds", [0.0, 8.0])
def test_budgeted_trainer_trains_for_its_seconds(tiny_dir, tmp_path, seconds):
    seen = []
    trainer = BudgetedTrainer(_cfg(tiny_dir, tmp_path), seconds, probe=1, on_step=lambda m: seen.append(m))
    result = trainer.run()
    speed = trainer.measured
    assert speed.step_s > 0 and speed.tokens_per_step > 0 and speed.setup_s > 0
    expected = steps_for(seconds, speed.step_s, 3)
    assert result.steps == expected == len(result.train_losses) and result.tokens > 0
    assert expected == 3 if seconds == 0 else expected == max(3, int(seconds / speed.step_s))   # not timing-bound
    assert [m.step for m in seen] == list(range(3, expected + 1)) and seen[-1].max_steps == expected
    assert seen[-1].lr == pytest.approx(0.0, abs=1e-12)   # the linear schedule ends at the chosen step
    assert (result.final_dir / "adapter_config.json").exists() or any(result.final_dir.iterdir())


def test_a_route_that_cannot_be_set_up_raises_setup_error(tiny_dir, tmp_path):
    with pytest.raises(SetupError, match="rank"):
        BudgetedTrainer(_cfg(tiny_dir, tmp_path, r=100000), 10.0, probe=1).run()
