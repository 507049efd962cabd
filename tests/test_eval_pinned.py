"""Scores pinned on the tiny model, so moving prompting and RAG onto the one eval path changes no number.

The values were measured with the three separate harnesses (eval runner, prompting's own scorer, RAG's
own QA scorer) before they became one; same model, items and seed must still give them."""

from __future__ import annotations

import pytest

from adaptlab.data.records import Classification
from adaptlab.eval.runner import evaluate
from adaptlab.prompting.run import run_prompt
from adaptlab.prompting.tasks import GENERIC_SPEC, task_from_records
from adaptlab.rag.evaluate import evaluate as rag_evaluate
from adaptlab.rag.evaluate import index_squad, squad_paragraphs, squad_questions
from adaptlab.rag.store import open_store
from tests.rag_fixtures import HashEmbedder

THIRD = 100 / 3


def test_eval_scores_are_pinned(tiny):
    model, tok = tiny
    res = evaluate(model, tok, ["mmlu", "sentiment"], limit=6, seed=3, log_samples=True)
    mmlu, senti = res["mmlu"], res["sentiment"]
    assert mmlu.score == pytest.approx(THIRD) and mmlu.metrics["acc_norm_macro"] == pytest.approx(THIRD)
    assert [s["id"] for s in mmlu.samples][:2] == ["mmlu/abstract_algebra/35", "mmlu/anatomy/233"]
    assert mmlu.samples[0]["loglikelihoods"] == pytest.approx([-10.818, -11.096, -10.889, -10.655], abs=2e-3)
    assert senti.score == pytest.approx(THIRD) and [s["answer"] for s in senti.samples] == ["neutral"] * 6
    assert [s["id"] for s in senti.samples] == ["sentiment/9", "sentiment/331", "sentiment/660", "sentiment/679",
                                                "sentiment/1881", "sentiment/2087"]
    assert senti.samples[1]["loglikelihoods"] == pytest.approx([-10.592, -10.7, -10.813], abs=2e-3)


@pytest.fixture(scope="module")
def toy_task():
    words = {"positive": "profit rose sharply", "negative": "loss widened badly", "neutral": "meeting held in May"}
    records = [Classification(f"{words[lb]} item {i}", lb) for i in range(8) for lb in words]
    return task_from_records("toy", records, GENERIC_SPEC, ["neutral", "negative", "positive"])


def test_prompt_scores_are_pinned(tiny, toy_task):
    model, tok = tiny
    spec = GENERIC_SPEC.model_copy(update={"shots": 2})
    r = run_prompt(model, tok, toy_task, spec, limit=5)
    assert (r.score, r.valid, r.majority) == pytest.approx((0.2, 1.0, 0.2))
    assert [p.pred for p in r.predictions] == ["positive"] * 5
    assert [p.output for p in r.predictions][:2] == ["neutral=-21.74 negative=-21.50 positive=-21.42",
                                                      "neutral=-21.76 negative=-21.51 positive=-21.43"]
    g = run_prompt(model, tok, toy_task, spec, mode="generate", limit=5, max_new_tokens=6)
    assert (g.score, g.valid, g.majority) == pytest.approx((0.0, 0.0, 0.2))
    assert [p.output for p in g.predictions] == ["\n" * 6] * 5 and [p.pred for p in g.predictions] == [None] * 5


def test_rag_scores_are_pinned(tiny, tmp_path):
    model, tok = tiny
    store, emb = open_store(str(tmp_path / "s.db")), HashEmbedder()
    try:
        paragraphs = squad_paragraphs(30)
        index_squad(store, emb, paragraphs)
        questions = squad_questions(6, seed=1, sources={s for s, _ in paragraphs})
        r = rag_evaluate(store, emb, model, tok, questions, k=2, ks=(1, 5))
    finally:
        store.close()
    assert r.recall["dense"] == pytest.approx({1: 1 / 3, 2: 0.5, 5: 2 / 3})
    assert r.recall["hybrid"] == pytest.approx({1: 2 / 3, 2: 2 / 3, 5: 2 / 3}) and r.recall["bm25"][1] == 1.0
    zero = {"exact_match": 0.0, "f1": 0.0, "contains_answer": 0.0}
    assert r.scores["closed_book"] == zero and r.scores["rag"] == zero
    assert [(row["closed_book"], row["rag"]) for row in r.rows] == [(":" * 16, ":" * 16)] * 6
