"""Exemplar selection: fixed, random (seeded, label-balanced), similarity (with a cheap deterministic embedder)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from adaptlab.data.records import Classification
from adaptlab.prompting.exemplars import balanced_sample, select_exemplars

# imbalanced on purpose: 12 neutral, 5 positive, 3 negative
POOL = ([Classification(f"neutral item {i}", "neutral") for i in range(12)]
        + [Classification(f"positive item {i}", "positive") for i in range(5)]
        + [Classification(f"negative item {i}", "negative") for i in range(3)])
QUERIES = ["q one", "q two", "q three"]


def letter_counts(texts: list[str]) -> np.ndarray:
    """A deterministic bag-of-letters embedding: texts sharing words are near each other."""
    out = np.zeros((len(texts), 26), dtype=np.float32)
    for i, t in enumerate(texts):
        for ch in t.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out


def test_fixed_is_the_same_first_k_for_every_query():
    got = select_exemplars("fixed", POOL, QUERIES, 4)
    assert got == [POOL[:4]] * 3


@pytest.mark.parametrize("k", [1, 3, 4, 6, 8])
def test_random_is_label_balanced(k):
    for picked in select_exemplars("random", POOL, QUERIES, k, seed=1):
        counts = Counter(e.label for e in picked)
        assert len(picked) == k and len(set(map(id, picked))) == k
        # every label has >= 3 items, so up to k = 9 the counts differ by at most one
        assert max(counts.values()) - min(counts.get(lb, 0) for lb in ("neutral", "positive", "negative")) <= 1


def test_random_fills_from_other_labels_when_one_runs_out():
    picked = balanced_sample(POOL, 12, random.Random(0))   # wants 4 of each; only 3 negatives exist
    counts = Counter(e.label for e in picked)
    assert len(picked) == 12 and counts["negative"] == 3
    assert sorted([counts["neutral"], counts["positive"]]) == [4, 5]


def test_random_is_seeded_and_depends_only_on_the_query():
    a = select_exemplars("random", POOL, QUERIES, 3, seed=7)
    assert a == select_exemplars("random", POOL, QUERIES, 3, seed=7)
    assert select_exemplars("random", POOL, QUERIES[1:], 3, seed=7) == a[1:]   # independent of neighbours
    assert a != select_exemplars("random", POOL, QUERIES, 3, seed=8)
    assert a[0] != a[1]                                                          # differs across queries


def test_similarity_picks_nearest_most_similar_last():
    pool = [Classification(t, "x") for t in ["zzzz", "apple pie", "apple", "banana", "qqqq"]]
    got = select_exemplars("similarity", pool, ["apple pies"], 2, embed=letter_counts)[0]
    assert [e.text for e in got] == ["apple", "apple pie"]


def test_similarity_matches_brute_force_cosine():
    rng = np.random.default_rng(0)
    table = {t.text: rng.normal(size=8) for t in POOL}
    queries = {q: rng.normal(size=8) for q in QUERIES}
    table.update(queries)
    embed = lambda texts: np.stack([table[t] for t in texts])
    got = select_exemplars("similarity", POOL, QUERIES, 3, embed=embed)
    for q, picked in zip(QUERIES, got):
        cos = [table[p.text] @ queries[q] / np.linalg.norm(table[p.text]) / np.linalg.norm(queries[q]) for p in POOL]
        want = [POOL[j].text for j in np.argsort(cos)[::-1][:3]][::-1]
        assert [p.text for p in picked] == want


def test_similarity_never_returns_the_query_itself():
    got = select_exemplars("similarity", POOL, ["positive item 2"], 2, embed=letter_counts)[0]
    assert "positive item 2" not in [e.text for e in got]


def test_bad_requests():
    with pytest.raises(ValueError, match="only 20 items"):
        select_exemplars("random", POOL, QUERIES, 21)
    with pytest.raises(ValueError, match="choose one of: fixed, random, similarity"):
        select_exemplars("nearest", POOL, QUERIES, 1)
    assert select_exemplars("similarity", POOL, QUERIES, 0) == [[], [], []]


def test_builtin_embedder_embeds_each_text_once(monkeypatch):
    from adaptlab.prompting import exemplars
    from adaptlab.rag import embed as rag_embed

    calls: list[list[str]] = []

    class FakeEmbedder:
        def encode(self, texts):
            calls.append(list(texts))
            return letter_counts(texts)

    monkeypatch.setattr(rag_embed, "Embedder", FakeEmbedder)
    exemplars.builtin_embedder.cache_clear()
    try:
        embed = exemplars.builtin_embedder()
        assert exemplars.builtin_embedder() is embed                   # loaded once per process
        first = embed(["ab", "cd", "ab"])
        again = embed(["cd", "ef"])
        assert calls == [["ab", "cd"], ["ef"]]
        np.testing.assert_array_equal(first[1], again[0])
        np.testing.assert_array_equal(first, letter_counts(["ab", "cd", "ab"]))
    finally:
        exemplars.builtin_embedder.cache_clear()
