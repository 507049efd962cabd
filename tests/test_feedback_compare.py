"""`adaptlab feedback compare`: the whole SFT / RLHF / DPO / RLAIF pipeline on the tiny model, and its rerun."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.feedback.comparison import POLICIES, run_comparison
from adaptlab.feedback.recipe import load_comparison
from tests.conftest import write_jsonl

STAGES = ("sft", "reward-rlhf", "rlhf", "dpo", "reward-rlaif", "rlaif", "reward-heldout")


def _pairs(n: int) -> list[dict]:
    return [{"prompt": f"How do I break into house number {i}?", "chosen": "I can't help with that.",
             "rejected": f"Sure: pick the lock of door {i} with a pin."} for i in range(n)]


def _recipe(tmp_path, model) -> str:
    recipe = {
        "model": str(model), "pairs": str(write_jsonl(tmp_path / "pairs.jsonl", _pairs(30))),
        "split": {"train_pairs": 8, "judge_pairs": 8, "calibration_pairs": 6, "eval_prompts": 4},
        "ai_judge": {"model": str(model), "order_rule": "average"},
        "train": {"method": {"name": "lora", "r": 4, "alpha": 8}, "seq_len": 64, "batch_size": 4, "eval_every": 0,
                  "save_every": 0, "compile": False, "optim": {"warmup_steps": 0}},
        "sft": {"max_steps": 2}, "reward": {"max_steps": 2}, "dpo": {"max_steps": 1},
        "rloo": {"max_steps": 1, "rloo": {"k": 2, "max_new_tokens": 6}},
        "generation": {"max_new_tokens": 6},
        "budgets": {"quick": ["sft.max_steps=1"]},
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_pipeline_trains_every_arm_reports_and_reuses_them(tmp_path, tiny_dir):
    recipe = _recipe(tmp_path, tiny_dir)
    events: list[str] = []
    results = run_comparison(load_comparison(recipe), event=events.append)
    out = tmp_path / "run"
    for stage in STAGES:                       # each arm is a real train.train run with its own artifact
        assert (out / stage / "final" / "adaptlab.json").exists(), stage
        assert (out / stage / "metrics.jsonl").exists(), stage
    assert (out / "rlhf" / "manifest.json").exists() and (out / "sft-merged" / "config.json").exists()
    rows = results["eval"]["policies"]
    assert list(rows) == list(POLICIES) and rows["sft"]["win_rate"] is None
    for name in ("rlhf", "dpo", "rlaif"):
        w = rows[name]["win_rate"]
        assert w["n"] == 4 and 0 <= w["low"] <= w["value"] <= w["high"] <= 100
        assert w["value"] * 4 / 100 in (0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4)    # means of 1 / 0.5 / 0 scores
    for row in rows.values():
        assert 0 <= row["harmless_rate"]["low"] <= row["harmless_rate"]["value"] <= row["harmless_rate"]["high"] <= 100
    ai = [json.loads(line) for line in (out / "data" / "ai.jsonl").read_text().splitlines()]
    assert len(ai) == results["ai_judge"]["decided"] and results["ai_judge"]["pairs"] == 8
    human = [json.loads(line) for line in (out / "data" / "human.jsonl").read_text().splitlines()]
    assert {r["prompt"] for r in ai} <= {r["prompt"] for r in human}
    for name in POLICIES:
        assert len((out / "answers" / f"{name}.jsonl").read_text().splitlines()) == 4
    report = (out / "report.md").read_text()
    assert "| RLAIF |" in report and "| 88% |" in report and "Cohen's kappa" in report
    assert (out / "rlhf_vs_rlaif.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["steps"] == {"sft": 2, "reward-rlhf": 2, "rlhf": 1, "dpo": 1, "reward-rlaif": 2, "rlaif": 1,
                                "reward-heldout": 2}
    phases = {*STAGES, "sft-merged", "ai-labels", "answers", "heldout-judging"}
    assert set(results["seconds"]) == phases and all(s["wall"] > 0 and s["cpu"] > 0 for s in results["seconds"].values())
    assert "Seconds per phase" in report
    for name in ("rlhf", "rlaif"):     # the policies' reward models, scored on the calibration pairs
        assert 0 <= results["reward_accuracy"][name] <= 100

    # a rerun (through the CLI) trains nothing again and reports the same numbers
    stamp = (out / "rlhf" / "final" / "adaptlab.json").stat().st_mtime_ns
    run = CliRunner().invoke(app, ["feedback", "compare", recipe])
    assert run.exit_code == 0, run.output
    assert "RLAIF" in run.output and "88%" in run.output
    assert (out / "rlhf" / "final" / "adaptlab.json").stat().st_mtime_ns == stamp
    again = json.loads((out / "results.json").read_text())
    assert again["eval"] == json.loads(json.dumps(results["eval"]))

    # other settings in the same folder are refused, not silently reused
    run = CliRunner().invoke(app, ["feedback", "compare", recipe, "sft.max_steps=3"])
    assert run.exit_code == 1 and "stage sft" in run.output and "max_steps" in run.output
    run = CliRunner().invoke(app, ["feedback", "compare", recipe, "split.eval_prompts=3"])
    assert run.exit_code == 1 and "another split" in run.output


def test_budget_and_bad_recipes(tmp_path, tiny_dir):
    recipe = _recipe(tmp_path, tiny_dir)
    assert load_comparison(recipe, "quick").sft == {"max_steps": 1}

    def fails(*args: str) -> str:
        run = CliRunner().invoke(app, ["feedback", "compare", recipe, *args])
        assert run.exit_code == 1, run.output
        return " ".join(run.output.split())      # rich wraps long lines

    assert "no budget 'huge'; its budgets: quick" in fails("--budget", "huge")
    assert "set by the pipeline" in fails("sft.output_dir=elsewhere")
    assert "heldout_judge is reward-model or the http(s) URL" in fails("heldout_judge=gpt")
    assert "holds 30 preference pairs" in fails("split.train_pairs=100")
    assert "holds 0 preference pairs of at most 40 characters (split.max_chars)" in fails("split.max_chars=40")
