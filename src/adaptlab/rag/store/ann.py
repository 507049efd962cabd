"""Approximate nearest-neighbour index over cosine similarity: usearch HNSW, saved atomically.

HNSW (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
Hierarchical Navigable Small World graphs", TPAMI 2018): a layered proximity graph searched
greedily from the top layer; `connectivity` is M (edges per node), `expansion_add` is
efConstruction and `expansion_search` is ef at query time. Chosen over faiss HNSW and flat search
by benchmarks/rag.py (build time, p95 latency, recall@10 at 1M clustered 384-d vectors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from usearch.index import Index

from adaptlab.atomic import replacing

# measured on 1M clustered 384-d vectors (benchmarks/rag.py --parts a, 2-core Xeon): efConstruction 48 left
# recall@10 at 0.84 even with ef 1024; 128 reaches 0.978 at ef 256 with p95 3.4 ms (build 483 s).
# f16 storage costs nothing measurable (exact search on f16-rounded vectors: recall@10 0.9995) and halves memory.
DTYPE = "f16"
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 256


class VectorIndex:
    """Keys are int64 chunk ids; scores are cosine similarities (1 - cosine distance)."""

    def __init__(self, dim: int, index: Index | None = None, connectivity: int = CONNECTIVITY,
                 expansion_add: int = EXPANSION_ADD) -> None:
        self.dim = dim
        self.index = index if index is not None else Index(
            ndim=dim, metric="cos", dtype=DTYPE, connectivity=connectivity,
            expansion_add=expansion_add, expansion_search=EXPANSION_SEARCH)

    @classmethod
    def load(cls, path: Path, dim: int) -> VectorIndex:
        index = Index.restore(str(path))
        if index is None or index.ndim != dim:
            raise ValueError(f"{path} is not a {dim}-d usearch index")
        index.expansion_search = EXPANSION_SEARCH
        return cls(dim, index)

    def __len__(self) -> int:
        return len(self.index)

    def keys(self) -> np.ndarray:
        return np.asarray(self.index.keys, dtype=np.int64) if len(self.index) else np.zeros(0, dtype=np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray, threads: int = 0) -> None:
        if len(ids):
            self.index.add(np.asarray(ids, dtype=np.int64), np.asarray(vectors, dtype=np.float32), threads=threads)

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove(np.asarray(ids, dtype=np.int64))

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        if not len(self.index):
            return []
        matches = self.index.search(np.asarray(vector, dtype=np.float32), min(k, len(self.index)), threads=1)
        return [(int(key), 1.0 - float(d)) for key, d in zip(matches.keys, matches.distances)]

    def save(self, path: Path) -> None:
        """Write atomically: readers see the old index or the new one, never half."""
        with replacing(path) as tmp:
            self.index.save(str(tmp))
