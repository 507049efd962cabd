"""Faithfulness: our MMLU equals lm-evaluation-harness (HF backend, its mmlu prompt, our items as local files)."""

import pytest

from adaptlab.eval.catalog import get_task
from adaptlab.eval.kinds import run_choices
from adaptlab.eval.reference import lm_eval_mmlu, mmlu_slice
from adaptlab.models import tiny_llama


def _ours(model, tok, subjects, per_subject):
    task = get_task("mmlu")
    proto = task.protocol()
    picked = []
    for subject in subjects:
        picked += [s for s in task.build(proto) if s.group == subject][:per_subject]
    return picked, run_choices(model, tok, task, picked, proto)


def _compare(model, tok, subjects, per_subject, tmp_path):
    items = mmlu_slice(subjects, per_subject)
    theirs = lm_eval_mmlu(model, tok, items, workdir=str(tmp_path))
    samples, scored = _ours(model, tok, subjects, per_subject)
    their_pairs = [p for s in subjects for p in theirs[s]]
    # the same prompts, character for character
    assert [s.context for s in samples] == [ctx for _, ctx in their_pairs]
    ours_pred = [["A", "B", "C", "D"].index(x.answer) for x in scored]
    their_pred = [p for p, _ in their_pairs]
    gold = [s.target for s in samples]
    agree = sum(a == b for a, b in zip(ours_pred, their_pred)) / len(gold)
    acc_ours = 100 * sum(p == g for p, g in zip(ours_pred, gold)) / len(gold)
    acc_theirs = 100 * sum(p == g for p, g in zip(their_pred, gold)) / len(gold)
    return agree, acc_ours, acc_theirs


def test_mmlu_matches_lm_eval_on_tiny_model(tmp_path):
    model, tok = tiny_llama(seed=1)
    agree, acc_ours, acc_theirs = _compare(model, tok, ["abstract_algebra", "anatomy", "virology"], 4, tmp_path)
    assert agree == 1.0 and abs(acc_ours - acc_theirs) <= 0.5


@pytest.mark.slow
def test_mmlu_matches_lm_eval_on_builtin_model(tmp_path):
    from adaptlab.models import load_model

    loaded = load_model("smollm2-135m", dtype="fp32", device="cpu")
    agree, acc_ours, acc_theirs = _compare(loaded.model, loaded.tokenizer,
                                           ["high_school_geography", "marketing", "nutrition"], 15, tmp_path)
    assert agree >= 0.97 and abs(acc_ours - acc_theirs) <= 0.5
