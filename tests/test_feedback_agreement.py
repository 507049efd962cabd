"""Cohen's kappa (against scikit-learn), the RLAIF order-averaging rule, and the comparison's rate maths."""

from __future__ import annotations

import random

import pytest

from adaptlab.feedback.agreement import cohen_kappa, pair_kappa
from adaptlab.feedback.judge import Item, judge_pairs, report, soft_preference
from adaptlab.feedback.policy_eval import calibrate_threshold, rate, win_scores
from adaptlab.feedback.store import FeedbackStore, Vote

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(5))
def test_kappa_equals_sklearn(seed):
    rng = random.Random(seed)
    labels = ["A", "B", "tie", "both_bad"][: 2 + seed % 3]
    a = [rng.choice(labels) for _ in range(40)]
    b = [x if rng.random() < 0.6 else rng.choice(labels) for x in a]
    assert cohen_kappa(a, b) == pytest.approx(sklearn_metrics.cohen_kappa_score(a, b), abs=1e-12)


def test_kappa_by_hand_and_edge_cases():
    # p_o = 3/4; p_e = (3/4)(1/2) + (1/4)(1/2) = 1/2; kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2
    assert cohen_kappa(["x", "x", "x", "y"], ["x", "x", "y", "y"]) == pytest.approx(0.5)
    assert cohen_kappa(["x", "y"], ["y", "x"]) == pytest.approx(-1.0)
    assert cohen_kappa(["x", "x"], ["x", "x"]) is None          # p_e = 1: undefined (sklearn: nan)
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa(["x"], [])


def test_pair_kappa_counts_both_labellings():
    # the human label is always x (HH pairs): plain kappa would be 0 whatever the judge does
    judge, human = ["x", "x", "x", "y"], ["x"] * 4
    assert cohen_kappa(judge, human) == 0.0
    both = sklearn_metrics.cohen_kappa_score(judge + ["y", "y", "y", "x"], human + ["y"] * 4)
    assert pair_kappa(judge, human) == pytest.approx(both) == pytest.approx(0.5)
    assert pair_kappa(["x", "tie"], ["x", "x"]) == pytest.approx(cohen_kappa(["x", "tie", "y", "tie"], ["x", "x", "y", "y"]))


def test_store_stats_kappa_is_the_two_annotators_kappa(tmp_path):
    store = FeedbackStore(tmp_path / "fb.db")
    ann1, ann2 = ["A", "A", "B", "tie", "B", "A"], ["A", "B", "B", "tie", "A", "A"]
    for i, (a, b) in enumerate(zip(ann1, ann2)):
        store.add_pair(i, f"p{i}", ("one", "two"), ("m", "m"), swapped=False)
        store.vote(Vote(pair_id=i + 1, annotator="bob", choice=b))   # voting order does not pick the rater
        store.vote(Vote(pair_id=i + 1, annotator="ann", choice=a))
    stats = store.stats()
    assert stats.kappa == pytest.approx(sklearn_metrics.cohen_kappa_score(ann1, ann2))
    assert stats.agreement == pytest.approx(4 / 6) and stats.overlapping_pairs == 6


class Probabilistic:
    """A judge with fixed P(A) per (prompt, answer shown as A): a strong slot bias plus a small real preference."""
    name = "probabilistic"

    def __init__(self, p_a: dict[tuple[str, str], float]):
        self.p_a = p_a

    def verdicts(self, prompts):
        return ["A" if p >= 0.5 else "B" for p in self.probabilities(prompts)]

    def probabilities(self, prompts):
        out = []
        for p in prompts:
            question = p.split("[Request]\n")[1].split("\n\n[Answer A]")[0]
            shown_a = p.split("[Answer A]\n")[1].split("\n\n[Answer B]")[0]
            out.append(self.p_a[(question, shown_a)])
        return out


def test_average_rule_on_a_hand_made_example(tmp_path):
    # q1: P(A)=0.9 with x first, 0.7 with y first -> p_x = (0.9 + 0.3) / 2 = 0.6: x wins under `average`,
    #     while FastChat sees A then A (a position flip) and calls it a tie.
    # q2: P(A)=0.8 / 0.8 -> p_x = 0.5 exactly: a tie under both rules (pure slot bias cancels).
    # q3: P(A)=0.2 / 0.9 -> p_x = 0.15: y wins under both rules.
    judge = Probabilistic({("q1", "x1"): 0.9, ("q1", "y1"): 0.7, ("q2", "x2"): 0.8, ("q2", "y2"): 0.8,
                           ("q3", "x3"): 0.2, ("q3", "y3"): 0.9})
    items = [Item(f"q{i}", f"x{i}", f"y{i}", "x") for i in (1, 2, 3)]
    state = tmp_path / "s.jsonl"
    fast = judge_pairs(items, judge, "crit", state)
    avg = judge_pairs(items, judge, "crit", state, order_rule="average")    # reuses the stored replies
    assert [r["p_x"] for r in avg] == pytest.approx([0.6, 0.5, 0.15])
    assert [r["verdict"] for r in fast] == ["tie", "tie", "y"]
    assert [r["verdict"] for r in avg] == ["x", "tie", "y"]
    assert [r["flipped"] for r in avg] == [True, True, False]
    r = report(avg)
    assert (r.decided, r.ties, r.agreement, r.order_rule) == (2, 1, 0.5, "average")
    assert soft_preference(0.9, 0.7) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="average, fastchat"):
        judge_pairs(items, judge, "crit", state, order_rule="majority")


def test_win_scores_threshold_and_rates():
    assert win_scores([2.0, 1.0, 0.5], [1.0, 1.0, 0.7]) == [1.0, 0.5, 0.0]
    # chosen {3, 2, 0.5} vs rejected {1, 0.8, 0}: t = 1.5 puts 5 of 6 on their side (only 0.5 falls below);
    # the other midpoints 0.25, 0.65, 0.9, 2.5 manage 4, 3, 4, 4
    assert calibrate_threshold([3.0, 2.0, 0.5], [1.0, 0.8, 0.0]) == pytest.approx(1.5)
    assert calibrate_threshold([5.0], [1.0]) == pytest.approx(3.0)
    r = rate([1.0, 0.0, 1.0, 1.0])
    assert r["value"] == 75.0 and r["low"] < 75.0 < r["high"] and r["n"] == 4
    with pytest.raises(ValueError):
        calibrate_threshold([], [1.0])
