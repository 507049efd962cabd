"""Generative prompting on the tiny model: GSM8K step by step with worked exemplars, a file of
{instruction, output} rows, scored by the task's metric through the one eval path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.eval.kinds import METRICS, short_answer
from adaptlab.models import generation
from adaptlab.prompting.ablate import ablate
from adaptlab.prompting.generative import GenerateTask, gsm8k_solution
from adaptlab.prompting.run import build_prompts, run_prompt
from adaptlab.prompting.spec import load_spec
from adaptlab.prompting.tasks import load_task

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def gsm8k() -> GenerateTask:
    return dataclasses.replace(load_task("gsm8k"), max_new_tokens=8)


@pytest.fixture(scope="module")
def spec():
    return load_spec(EXAMPLES / "prompt-gsm8k.yaml")


def test_gsm8k_solution_ends_with_the_answer_line():
    assert gsm8k_solution("48/2 = <<48/2=24>>24 in May.\n#### 72") == "48/2 = 24 in May.\nThe answer is 72."


def test_spec_builds_the_gsm8k_context(tiny, gsm8k, spec):
    _, tok = tiny
    item = gsm8k.items[0]
    full = build_prompts(tok, gsm8k, spec, [item])[0]
    for part in ("Let's think step by step.", "## Steps", "You are a careful math tutor", item.text,
                 gsm8k.pool[0].text, gsm8k.pool[1].label):
        assert part in full
    assert gsm8k.pool[2].text not in full     # 2 fixed shots: only the first two demonstrations
    bare = build_prompts(tok, gsm8k, spec.only().model_copy(update={"shots": 0}), [item])[0]
    assert "step by step" not in bare and gsm8k.pool[0].text not in bare and item.text in bare


def test_gsm8k_scores_through_the_eval_path(tiny, gsm8k, spec):
    model, tok = tiny
    r = run_prompt(model, tok, gsm8k, spec, limit=3)
    assert (r.task, r.mode, r.metric, r.n, r.majority) == ("gsm8k", "generate", "number_match", 3, None)
    prompts = build_prompts(tok, gsm8k, spec, gsm8k.items[:3])
    outputs = generation.generate(model, tok, prompts, max_new_tokens=8)
    assert [p.output for p in r.predictions] == outputs            # the spec-built context was asked
    assert [p.gold for p in r.predictions] == [it.label for it in gsm8k.items[:3]]
    assert r.score == sum(METRICS["number_match"](p.pred, [p.gold]) if p.pred else 0.0 for p in r.predictions) / 3
    with pytest.raises(ValueError, match="generative"):
        run_prompt(model, tok, gsm8k, spec, mode="constrained", limit=1)


def test_instruction_file_is_a_generative_task(tiny, tmp_path):
    model, tok = tiny
    rows = [{"instruction": f"What is {i} plus {i}?", "output": str(2 * i)} for i in range(12)]
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    task = load_task(str(path))
    assert isinstance(task, GenerateTask) and len(task.items) + len(task.pool) == 12
    task = dataclasses.replace(task, max_new_tokens=4)
    r = run_prompt(model, tok, task, task.spec.model_copy(update={"shots": 1}), limit=4)
    assert r.metric == "exact_match" and r.n == 4
    assert [p.pred for p in r.predictions] == [short_answer(p.output) for p in r.predictions]
    assert r.score == sum(METRICS["exact_match"](p.pred, [p.gold]) for p in r.predictions) / 4
    res = ablate(model, tok, task, task.spec.model_copy(update={"shots": 1}), limit=2)
    assert res.mode == "generate" and res.metric == "exact_match"
    assert [e.component for e in res.effects] == ["role", "instruction", "steps", "delimiters", "structure",
                                                  "exemplars"]


def test_cli_prompts_a_generative_file(tiny_dir, tmp_path):
    rows = [{"instruction": "Name a colour.", "input": f"item {i}", "output": "red"} for i in range(10)]
    path = tmp_path / "colours.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["prompt", "--task", str(path), "--model", str(tiny_dir), "--limit", "2",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["metric"] == "exact_match" and data["mode"] == "generate" and data["majority"] is None
    assert "exact_match" in res.output and "majority class" in res.output
