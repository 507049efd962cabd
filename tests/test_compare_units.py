"""compare's pure parts: intervals, Pareto front, budget plan, task split, claims and recommendation."""

import math
import random

import pytest

from adaptlab.compare.planner import Speed, parse_budget, plan_steps, steps_for, training_seconds
from adaptlab.compare.recipe import CompareConfig, TaskSpec
from adaptlab.compare.stats import bootstrap, interval, overlap, pareto_front, wilson
from adaptlab.compare.taskdata import exemplars, split, write_task
from adaptlab.compare.verdict import claims, peft_vs_full, recommendation, summarize
from adaptlab.data.records import Classification
from tests.conftest import write_jsonl


def test_wilson_matches_the_closed_form_and_published_values():
    # Newcombe 1998, Table I: 81/263 -> 0.2553-0.3662; 15/148 -> 0.0624-0.1605
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)


def test_bootstrap_close_to_the_normal_interval_for_many_items():
    rng = random.Random(0)
    scores = [rng.random() for _ in range(400)]
    mean = sum(scores) / len(scores)
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
    lo, hi = bootstrap(scores, draws=1000)
    assert lo == pytest.approx(mean - 1.96 * sd / 20, abs=0.01) and hi == pytest.approx(mean + 1.96 * sd / 20, abs=0.01)
    assert interval([1.0, 0.0, 1.0, 1.0]) == wilson(3, 4)        # 0/1 scores: Wilson


def test_overlap_and_pareto_front():
    assert overlap((0.1, 0.3), (0.3, 0.5)) and not overlap((0.1, 0.2), (0.3, 0.5))
    points = {"a": (1.0, 50.0), "b": (2.0, 60.0), "c": (3.0, 55.0), "d": (2.0, 40.0), "e": (5.0, 70.0)}
    assert pareto_front(points) == ["a", "b", "e"]


def test_parse_budget():
    assert parse_budget("quick", {"quick": "5m"}) == 300
    assert parse_budget("90s", {}) == 90 and parse_budget("1.5h", {}) == 5400 and parse_budget("120", {}) == 120
    with pytest.raises(ValueError, match="quick"):
        parse_budget("soon", {"quick": "5m"})


def test_plan_gives_equal_time_or_equal_tokens():
    speeds = [Speed("lora", 1.0, 0.5, 1000), Speed("full", 2.0, 2.0, 1000), Speed("tiny", 1.0, 0.1, 500)]
    steps = plan_steps(speeds, 60.0, "time")
    assert steps == {"lora": 40, "full": 10, "tiny": 200}             # 20 s each
    steps = plan_steps(speeds, 60.0, "tokens")
    tokens = {s.route: steps[s.route] * s.tokens_per_step for s in speeds}
    assert max(tokens.values()) - min(tokens.values()) <= 1000          # the same tokens, up to one step
    assert sum(steps[s.route] * s.step_s for s in speeds) <= 60.0
    assert plan_steps(speeds, 0.0, "time") == {"lora": 1, "full": 1, "tiny": 1}
    assert training_seconds(300, 100, [50, 50], margin=0.1) == pytest.approx(90)
    assert training_seconds(300, 290, [50]) == 0.0


def test_a_cell_timing_itself_takes_the_steps_its_seconds_hold():
    assert steps_for(20.0, 0.5, 3) == 40 and steps_for(20.0, 3.0, 3) == 6
    assert steps_for(1.0, 2.0, 3) == 3 and steps_for(0.0, 0.0, 2) == 2     # never fewer than the least


def _rows(n, prefix="s"):
    labels = ["negative", "neutral", "positive"]
    return [{"text": f"{prefix} {i}", "label": labels[i % 3]} for i in range(n)]


def test_test_split_is_carved_disjoint_and_overlap_is_refused(tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", _rows(60))
    train, test, carved = split(TaskSpec(data=str(data), test_size=15))
    assert carved and len(test) == 15 and len(train) == 45
    assert not {r.text for r in train} & {r.text for r in test}
    assert split(TaskSpec(data=str(data), test_size=15))[1] == test        # seeded: the same every time
    leaky = write_jsonl(tmp_path / "test.jsonl", _rows(3))
    with pytest.raises(ValueError, match=r"test\.jsonl: 3 test rows also appear"):
        split(TaskSpec(data=str(data), test=str(leaky)))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": "bullish"}])
    with pytest.raises(ValueError, match="bullish"):
        split(TaskSpec(data=str(bad)))


def test_written_task_scores_the_same_items_at_every_shot_count(tmp_path):
    from adaptlab.eval.catalog import get_task

    data = write_jsonl(tmp_path / "data.jsonl", _rows(60))
    files = write_task(TaskSpec(data=str(data), test_size=12), [0, 3], 5, tmp_path / "out")
    zero, three = get_task(str(files.shots(0))), get_task(str(files.shots(3)))
    s0, s3 = zero.build(zero.protocol()), three.build(three.protocol())
    assert len(s0) == len(s3) == 12 and [s.target for s in s0] == [s.target for s in s3]
    assert s3[0].context.count("Sentence:") == 4 and s3[0].context.endswith(s0[0].context)
    shots = exemplars([Classification(f"t{i}", lab) for i, lab in enumerate(["neutral"] * 5 + ["negative"])],
                      ["negative", "neutral", "positive"], 3)
    assert {r.label for r in shots} == {"negative", "neutral"}


def _record(route, method, score, n=200, kind="train", **extra):
    base = {"route": route, "kind": kind, "method": method, "status": "ok", "seed": 0,
            "test": {"metric": "acc", "score": score, "n": n, "interval": [0, 0]}, "peak_memory_mb": 1000.0,
            "train_time_s": 60.0, "eval_time_s": 10.0, "trainable_share": 0.01}
    return {**base, **extra}


def test_claims_and_recommendation_follow_the_numbers():
    records = [_record("zero-shot", None, 40.0, kind="prompt", forgetting={"mmlu_acc": 30.0, "text_ce": 2.0},
                       train_time_s=0.0),
               _record("full", "full", 80.0, forgetting={"mmlu_acc": 20.0, "text_ce": 2.5}, peak_memory_mb=4000.0),
               _record("lora", "lora", 78.0, forgetting={"mmlu_acc": 29.0, "text_ce": 2.1}),
               _record("qlora", "qlora", 60.0, forgetting={"mmlu_acc": 29.0, "text_ce": 2.1})]
    found = {c: (v, why) for c, v, why in claims(summarize(records))}
    assert found["PEFT matches full fine-tuning"][0] == "supported"        # 78 vs 80 on 200 items: overlap
    assert found["PEFT forgets less"][0] == "supported"
    assert found["QLoRA costs no quality"][0] == "not supported"           # 60 vs 78: no overlap
    text = recommendation(summarize(records))
    assert "**full**" in text and "overlaps lora" in text                  # best, but not clearly
    assert "Per GB of peak memory: **lora**" in text                       # 38 points in 1 GB beats 40 in 4 GB
    rows = peft_vs_full(summarize(records))
    assert [r[0] for r in rows] == ["full", "lora", "qlora"] and rows[1][2] == "-2.0" and rows[2][3] == "no"
    records[1]["test"]["score"] = 99.0
    assert {c: v for c, v, _ in claims(summarize(records))}["PEFT matches full fine-tuning"] == "not supported"


def test_recipe_rejects_repeated_routes():
    with pytest.raises(ValueError, match="repeated: lora"):
        CompareConfig(routes=[{"name": "lora", "method": {"name": "lora"}}, {"name": "lora"}])


def test_report_says_when_the_budget_left_no_training_time():
    from adaptlab.compare.report import blocks, to_markdown

    run = {"recipe": {"model": "m", "share": "time", "task": {"name": "t", "data": "d"}, "routes": [{"name": "lora"}]},
           "budget_s": 60, "n_train": 10, "n_test": 10, "plan": {"training_s": 0.0, "steps": {"lora": 1},
                                                                 "speeds": {"lora": {"step_s": 1.0, "tokens_per_step": 10}}}}
    md = to_markdown(blocks(run, [_record("lora", "lora", 50.0, n=10)], []))
    assert "budget was spent before training could start" in md and "| lora | 1 |" in md
    run["plan"]["training_s"] = 30.0
    assert "budget was spent" not in to_markdown(blocks(run, [_record("lora", "lora", 50.0, n=10)], []))


def test_budget_table_shows_what_cells_that_timed_themselves_chose():
    from adaptlab.compare.report import blocks, to_markdown

    run = {"recipe": {"model": "m", "share": "time", "task": {"name": "t", "data": "d"}, "routes": [{"name": "lora"}]},
           "budget_s": 60, "n_train": 10, "n_test": 10,
           "plan": {"training_s": 30.0, "steps": {}, "speeds": {}, "train_s": {"lora": 30.0}}}
    timed = {"route": "lora", "setup_s": 2.0, "step_s": 0.75, "tokens_per_step": 321.0}
    md = to_markdown(blocks(run, [_record("lora", "lora", 50.0, n=10, steps=40, speed=timed)], []))
    assert "| lora | 40 | 0.75 | 321 |" in md and "budget was spent" not in md
    run["plan"]["training_s"] = 0.0
    md = to_markdown(blocks(run, [_record("lora", "lora", 50.0, n=10, steps=3, speed=timed)], []))
    assert "its timed steps and one more" in md and "| lora | 3 |" in md
