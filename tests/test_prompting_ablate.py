"""Ablation: every component (and the exemplars) switched on and off; effects are differences of scores."""

from __future__ import annotations

import pytest

from adaptlab.data.records import Classification
from adaptlab.models import tiny_llama
from adaptlab.prompting.ablate import ablate, plot_ablation, variants
from adaptlab.prompting.run import PromptResult
from adaptlab.prompting.spec import COMPONENTS
from adaptlab.prompting.tasks import GENERIC_SPEC, task_from_records

SPEC = GENERIC_SPEC.model_copy(update={"shots": 2})
TASK = task_from_records("toy", [Classification(f"text {i}", ["a", "b"][i % 2]) for i in range(20)], SPEC)
# a made-up additive world: each component adds a known amount to the score
WEIGHT = {"role": 0.01, "instruction": 0.2, "steps": -0.05, "delimiters": 0.02, "structure": 0.0, "exemplars": 0.1}


def fake_run(model, tokenizer, task, spec, **kwargs) -> PromptResult:
    score = 0.3 + sum(WEIGHT[c] for c in spec.components()) + (WEIGHT["exemplars"] if spec.shots else 0)
    return PromptResult(task.name, kwargs["mode"], spec.shots, spec.selection, spec.components(), "accuracy",
                        score, 1.0, 0.5, 10)


def test_variants_switch_one_thing_each():
    v = variants(SPEC)
    assert set(v) == {"full", "bare"} | {f"{s}{c}" for c in [*COMPONENTS, "exemplars"] for s in "-+"}
    assert v["bare"].components() == [] and v["bare"].shots == 0
    for c in COMPONENTS:
        assert v[f"-{c}"].components() == [x for x in COMPONENTS if x != c] and v[f"-{c}"].shots == 2
        assert v[f"+{c}"].components() == [c] and v[f"+{c}"].shots == 0
    assert v["-exemplars"].components() == list(COMPONENTS) and v["-exemplars"].shots == 0
    assert v["+exemplars"].components() == [] and v["+exemplars"].shots == 2


def test_zero_shot_spec_does_not_ablate_exemplars_and_off_components_are_skipped():
    v = variants(GENERIC_SPEC.without("steps"))
    assert "-exemplars" not in v and "-steps" not in v and "-role" in v


def test_effects_recover_each_components_contribution():
    result = ablate(None, None, TASK, SPEC, mode="constrained", run=fake_run)
    assert result.full == pytest.approx(0.3 + sum(WEIGHT.values()))
    assert result.bare == pytest.approx(0.3)
    assert {e.component for e in result.effects} == set(WEIGHT)
    for e in result.effects:
        assert e.effect_off == pytest.approx(WEIGHT[e.component])
        assert e.effect_on == pytest.approx(WEIGHT[e.component])
        assert e.without == pytest.approx(result.full - WEIGHT[e.component])


def test_real_ablation_on_tiny_model_and_plot(tmp_path):
    model, tok = tiny_llama()
    result = ablate(model, tok, TASK, SPEC, mode="constrained", limit=3)
    assert result.n == 3 and result.mode == "constrained" and len(result.effects) == 6
    for e in result.effects:
        assert 0.0 <= e.without <= 1.0 and e.effect_off == pytest.approx(result.full - e.without)
        assert 0.0 <= e.se_off <= 1.0 and 0.0 <= e.se_on <= 1.0
    png = plot_ablation(result, tmp_path / "sub" / "ablation.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_paired_standard_error_matches_numpy():
    import numpy as np

    from adaptlab.prompting.ablate import paired_se
    from adaptlab.prompting.run import Prediction

    a_scores, b_scores = [1, 1, 0, 1, 0, 1], [0, 1, 0, 0, 1, 0]

    def result(scores):
        preds = [Prediction("t", "g", None, "", float(s)) for s in scores]
        return PromptResult("t", "constrained", 0, "random", [], "accuracy", sum(scores) / 6, 1.0, 0.5, 6, preds)

    d = np.array(a_scores, float) - np.array(b_scores, float)
    assert paired_se(result(a_scores), result(b_scores)) == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)))
    assert paired_se(result([1]), result([0])) == 0.0
