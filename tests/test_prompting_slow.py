"""The builtin 135M model few-shot on 30 sentiment items (slow: run with -m slow).

Only what is robust is asserted: well-formed results, constrained answers are always valid labels,
and the score is the share of correct predictions. A 135M model's accuracy is not pinned."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def builtin():
    from adaptlab.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="module")
def sentiment():
    from adaptlab.prompting import load_task

    return load_task("sentiment")


def test_few_shot_by_similarity_constrained(builtin, sentiment):
    from adaptlab.prompting import run_prompt

    spec = sentiment.spec.model_copy(update={"shots": 3, "selection": "similarity"})   # the real MiniLM embedder
    r = run_prompt(builtin.model, builtin.tokenizer, sentiment, spec, limit=30)
    assert r.mode == "constrained" and r.n == 30 and r.shots == 3 and r.valid == 1.0
    assert all(p.pred in sentiment.labels for p in r.predictions)
    assert [p.gold for p in r.predictions] == [it.label for it in sentiment.items[:30]]
    assert r.score == pytest.approx(sum(p.pred == p.gold for p in r.predictions) / 30)
    assert 0.0 < r.majority < 1.0


def test_few_shot_generate_and_parse(builtin, sentiment):
    from adaptlab.prompting import run_prompt

    spec = sentiment.spec.model_copy(update={"shots": 3})
    r = run_prompt(builtin.model, builtin.tokenizer, sentiment, spec, limit=6, mode="generate", max_new_tokens=8)
    assert r.mode == "generate" and r.n == 6 and 0.0 <= r.valid <= 1.0
    assert all(p.pred in (None, *sentiment.labels) and p.output.strip() for p in r.predictions)
