"""The Store interface every backend implements, the search hit type, and reciprocal rank fusion.

A store holds chunks, their vectors and the content hash of each source. Writes replace a whole
source at once (`upsert(source, digest, chunks, vectors)`) rather than single chunks, so a source's
chunks and its hash always change together: that is what makes incremental re-indexing and resume
after an interruption correct. `batch()` groups several writes into one atomic commit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from adaptlab.rag.chunk import Chunk

RRF_K = 60  # Cormack et al. 2009: k=60 is robust across collections


class StoreError(RuntimeError):
    """A store that cannot be opened, reached or used as asked (the message says how to fix it)."""


_QUERY_PASSWORD = re.compile(r"(?i)(?:^|[?&;\s])(?:ssl)?password\s*=\s*('(?:[^'\\]|\\.)*'|[^&#\s]*)")


def passwords(url: str) -> list[str]:
    """The passwords a PostgreSQL URL or libpq keyword string carries: `user:pass@` (also with an empty user
    or a password holding '@', ':' or '/'), `?password=` / `sslpassword=`, and `password=...`."""
    found = [m.group(1).strip("'") for m in _QUERY_PASSWORD.finditer(url)]
    _, sep, rest = url.partition("://")
    if sep:
        authority_end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
        at = rest.rfind("@", 0, authority_end)
        if at >= 0 and ":" in rest[:at]:
            found.append(rest[rest.index(":") + 1:at])
    return [p for p in found if p]


def redact(text: str, url: str | None = None) -> str:
    """`text` (by default the URL itself; else e.g. a driver's error about it) with every password of `url`
    masked, and the pieces of one (split at '@', ':', '/', as a parser may have cut it) when 2+ long."""
    secrets = set()
    for password in passwords(url if url is not None else text):
        secrets |= {password, *(piece for piece in re.split(r"[@:/]", password) if len(piece) >= 2)}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float          # fused RRF score for hybrid search, else the backend's own score
    dense_rank: int | None = None    # 1-based rank on the dense side, None where it did not return it
    lexical_rank: int | None = None


@dataclass(frozen=True)
class StoreInfo:
    embedder: str
    dim: int


class Store(Protocol):
    info: StoreInfo | None    # None until the first write fixes the embedder and dimension

    def set_info(self, info: StoreInfo) -> None:
        """Record the embedder on first use; raise StoreError if the store holds another one's vectors."""
        ...

    def sources(self) -> dict[str, str]:
        """Every indexed source and its content hash."""
        ...

    def upsert(self, source: str, digest: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Replace all chunks of `source` by `chunks` (row i embedded as vectors[i])."""
        ...

    def delete(self, source: str) -> None: ...

    def search(self, vector: np.ndarray | None, text: str | None, k: int) -> list[Hit]:
        """Top k chunks: dense if only `vector`, lexical if only `text`, hybrid (RRF) if both."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Writes inside commit together or not at all."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings r of 1 / (k + rank_r(d)), rank 1-based.

    Cormack, Clarke & Buettcher, "Reciprocal Rank Fusion outperforms Condorcet and individual rank
    learning methods", SIGIR 2009. Returns (id, score) best first; ties keep first-seen order.
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def fuse(dense: Sequence[tuple[int, float]], lexical: Sequence[tuple[int, float]], k: int) -> Iterator[
        tuple[int, float, int | None, int | None]]:
    """(id, score, dense_rank, lexical_rank) of the top k ids of one or both ranked lists."""
    dense_rank = {i: r for r, (i, _) in enumerate(dense, start=1)}
    lexical_rank = {i: r for r, (i, _) in enumerate(lexical, start=1)}
    if dense and lexical:
        ranked = rrf([[i for i, _ in dense], [i for i, _ in lexical]])
    else:
        ranked = list(dense or lexical)
    for i, score in ranked[:k]:
        yield i, score, dense_rank.get(i), lexical_rank.get(i)


def check_info(current: StoreInfo | None, wanted: StoreInfo, where: str) -> None:
    """Refuse to mix vectors of different embedders in one store."""
    if current is None or current == wanted:
        return
    if current.dim != wanted.dim:
        raise StoreError(f"{where} holds {current.dim}-d vectors from embedder {current.embedder!r}, but embedder "
                         f"{wanted.embedder!r} makes {wanted.dim}-d vectors: use --embedder {current.embedder} "
                         "or a new --store; nothing in the store was changed")
    raise StoreError(f"{where} was indexed with embedder {current.embedder!r}, not {wanted.embedder!r} "
                     f"(same dimension {wanted.dim}, different vector space): use --embedder {current.embedder} "
                     "or a new --store; nothing in the store was changed")


def check_vectors(info: StoreInfo | None, chunks: Sequence[Chunk], vectors: np.ndarray, where: str) -> np.ndarray:
    """The vectors as float32 [chunks x dim]; an error when the store is unset or its dimension differs."""
    if info is None:
        raise StoreError("set_info(embedder, dim) before the first upsert")
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(chunks), -1)
    if vectors.shape[1] != info.dim:
        raise StoreError(f"{vectors.shape[1]}-d vectors do not fit {where} ({info.dim}-d, {info.embedder})")
    return vectors


def hybrid_search(dense: Callable[[np.ndarray, int], list[tuple[int, float]]],
                  lexical: Callable[[str, int], list[tuple[int, float]]],
                  fetch: Callable[[list[int]], dict[int, tuple]],
                  vector: np.ndarray | None, text: str | None, k: int) -> list[Hit]:
    """The search every store runs: dense and/or lexical candidates, fused by RRF, then the chunk rows
    `(id, source, ordinal, start, end, text)` that `fetch` reads from the store's own tables."""
    n = candidates(k) if vector is not None and text else k
    fused = list(fuse(dense(vector, n) if vector is not None else [], lexical(text, n) if text else [], k))
    rows = fetch([i for i, *_ in fused])
    return [Hit(Chunk(*rows[i][1:]), score, dr, lr) for i, score, dr, lr in fused if i in rows]


def candidates(k: int) -> int:
    """How many results each side of a hybrid search fetches before fusion."""
    return max(4 * k, 40)
