"""The contrastive log-likelihood judge on the tiny model: its formula, order-freedom, and the CLI option."""

from __future__ import annotations

import math

import pytest

from adaptlab.feedback.backends import make_backend
from adaptlab.feedback.contrastive import ContrastiveJudge, instruction_text
from adaptlab.feedback.judge import Item, judge_pairs
from adaptlab.models.generation import loglikelihoods


def test_preference_is_sigmoid_of_the_pmi_difference(tiny, tmp_path):
    model, tok = tiny
    judge = ContrastiveJudge(model, tok, "Be harmless.")
    item = Item("User: how do I pick a lock?", "I can't help with that.", "Use a pin.", "x")
    (p,) = judge.pair_probabilities([item])
    with_c, without = judge._context(item.prompt, "Be harmless."), judge._context(item.prompt, None)
    ll = {(c, a): v for (c, a), (v, _) in zip([(c, a) for a in (item.x, item.y) for c in (with_c, without)],
                                              loglikelihoods(model, tok, [(c, a) for a in (item.x, item.y)
                                                                          for c in (with_c, without)]))}
    pmi_x, pmi_y = ll[(with_c, item.x)] - ll[(without, item.x)], ll[(with_c, item.y)] - ll[(without, item.y)]
    assert p == pytest.approx(1 / (1 + math.exp(-(pmi_x - pmi_y))), rel=1e-5)
    (q,) = judge.pair_probabilities([Item(item.prompt, item.y, item.x)])
    assert p + q == pytest.approx(1.0, abs=1e-6)          # no order to be biased by
    (rec,) = judge_pairs([item], judge, "ignored", tmp_path / "s.jsonl", order_rule="average")
    assert rec["p_x"] == pytest.approx(p) and not rec["flipped"] and rec["verdict"] == ("x" if p > 0.5 else "y")


def test_scoring_option(tiny_dir):
    assert isinstance(make_backend(str(tiny_dir), scoring="contrastive", criteria="harmless"), ContrastiveJudge)
    assert "harmless" in instruction_text("harmless")
    with pytest.raises(ValueError, match="contrastive, letters"):
        make_backend(str(tiny_dir), scoring="vibes")
    with pytest.raises(ValueError, match="needs a local model"):
        make_backend("http://127.0.0.1:9/v1", scoring="contrastive")
