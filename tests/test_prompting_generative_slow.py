"""The builtin 135M model on GSM8K with the example spec, step by step with 2 worked exemplars
(slow: run with -m slow). A 135M model's GSM8K score is not pinned; what it must do is follow the
demonstrated format, so that the `number` extractor reads an answer from every output."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_gsm8k_example_spec_with_the_builtin_model():
    from adaptlab.models import load_model
    from adaptlab.prompting import load_spec, load_task, run_prompt

    loaded = load_model("smollm2-135m")
    task = dataclasses.replace(load_task("gsm8k"), max_new_tokens=96)
    r = run_prompt(loaded.model, loaded.tokenizer, task, load_spec(EXAMPLES / "prompt-gsm8k.yaml"), limit=2)
    assert (r.metric, r.n, r.shots) == ("number_match", 2, 2)
    assert r.valid == 1.0 and all(p.pred for p in r.predictions)
    assert 0.0 <= r.score <= 1.0 and r.score == sum(p.score for p in r.predictions) / 2
