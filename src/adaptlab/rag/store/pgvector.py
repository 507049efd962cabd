"""PostgreSQL + pgvector store: an HNSW index over the vectors and a tsvector GIN index for the lexical side.

For corpora that outgrow one file, or that several machines share. Each write runs in a PostgreSQL
transaction (nested `batch()` calls become savepoints), so a source's chunks and hash change together
and an interrupted run leaves only whole sources behind. Lexical ranking is `ts_rank_cd` over an
English `tsvector` (cover density, Clarke et al. 2000): PostgreSQL has no BM25 of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from adaptlab.rag.chunk import Chunk
from adaptlab.rag.store.base import Hit, StoreError, StoreInfo, check_info, check_vectors, hybrid_search, redact

PREFIX = "adaptlab_rag"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 100


def ts_query(text: str) -> str:
    """A to_tsquery OR-expression of the text's words (\\w+ never holds tsquery operators)."""
    return " | ".join(dict.fromkeys(re.findall(r"\w+", text.lower())))


class PgVectorStore:
    """Store in the tables `adaptlab_rag_*` of the database at `url` (postgresql://...)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            reason = redact(str(e).strip().splitlines()[0], url)
            raise StoreError(f"cannot connect to {redact(url)}: {reason}") from None
        try:
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as e:
            raise StoreError(f"{redact(url)} has no pgvector extension and it cannot be created "
                             f"({str(e).strip().splitlines()[0]}); install pgvector on that server") from None
        from pgvector.psycopg import register_vector

        register_vector(self.conn)
        with self.conn.transaction():
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {PREFIX}_meta(key text PRIMARY KEY, value text NOT NULL)")
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {PREFIX}_sources(source text PRIMARY KEY, digest text NOT NULL)")
        self.conn.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")

    @property
    def info(self) -> StoreInfo | None:
        rows = dict(self.conn.execute(f"SELECT key, value FROM {PREFIX}_meta WHERE key IN ('embedder', 'dim')"))
        return StoreInfo(rows["embedder"], int(rows["dim"])) if len(rows) == 2 else None

    def set_info(self, info: StoreInfo) -> None:
        check_info(self.info, info, redact(self.url))
        if self.info is not None:
            return
        with self.conn.transaction():
            self.conn.execute(f"""CREATE TABLE IF NOT EXISTS {PREFIX}_chunks(
                id bigserial PRIMARY KEY, source text NOT NULL, ordinal int NOT NULL, start int NOT NULL,
                "end" int NOT NULL, text text NOT NULL,
                tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
                embedding vector({int(info.dim)}) NOT NULL)""")
            self.conn.execute(f"CREATE INDEX IF NOT EXISTS {PREFIX}_chunks_source ON {PREFIX}_chunks(source)")
            self.conn.execute(f"CREATE INDEX IF NOT EXISTS {PREFIX}_chunks_hnsw ON {PREFIX}_chunks USING hnsw "
                              f"(embedding vector_cosine_ops) WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")
            self.conn.execute(f"CREATE INDEX IF NOT EXISTS {PREFIX}_chunks_tsv ON {PREFIX}_chunks USING gin(tsv)")
            self.conn.execute(f"INSERT INTO {PREFIX}_meta(key, value) VALUES ('embedder', %s), ('dim', %s)",
                              (info.embedder, str(info.dim)))

    def sources(self) -> dict[str, str]:
        return dict(self.conn.execute(f"SELECT source, digest FROM {PREFIX}_sources"))

    def count(self) -> int:
        if self.info is None:
            return 0
        return self.conn.execute(f"SELECT count(*) FROM {PREFIX}_chunks").fetchone()[0]

    @contextmanager
    def batch(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def upsert(self, source: str, digest: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        vectors = check_vectors(self.info, chunks, vectors, str(redact(self.url)))
        with self.batch(), self.conn.cursor() as cur:
            cur.execute(f"DELETE FROM {PREFIX}_chunks WHERE source = %s", (source,))
            cur.executemany(f'INSERT INTO {PREFIX}_chunks(source, ordinal, start, "end", text, embedding) '
                            "VALUES (%s, %s, %s, %s, %s, %s)",
                            [(source, c.ordinal, c.start, c.end, c.text, v) for c, v in zip(chunks, vectors)])
            cur.execute(f"INSERT INTO {PREFIX}_sources(source, digest) VALUES (%s, %s) "
                        "ON CONFLICT (source) DO UPDATE SET digest = excluded.digest", (source, digest))

    def delete(self, source: str) -> None:
        with self.batch():
            if self.info is not None:
                self.conn.execute(f"DELETE FROM {PREFIX}_chunks WHERE source = %s", (source,))
            self.conn.execute(f"DELETE FROM {PREFIX}_sources WHERE source = %s", (source,))

    def _dense(self, vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        v = np.asarray(vector, dtype=np.float32)
        return [(i, float(s)) for i, s in self.conn.execute(
            f"SELECT id, 1 - (embedding <=> %s) FROM {PREFIX}_chunks ORDER BY embedding <=> %s LIMIT %s", (v, v, n))]

    def _lexical(self, text: str, n: int) -> list[tuple[int, float]]:
        query = ts_query(text)
        if not query:
            return []
        return [(i, float(s)) for i, s in self.conn.execute(
            f"SELECT id, ts_rank_cd(tsv, q, 1) AS s FROM {PREFIX}_chunks, to_tsquery('english', %s) q "
            "WHERE tsv @@ q ORDER BY s DESC, id LIMIT %s", (query, n))]

    def search(self, vector: np.ndarray | None, text: str | None, k: int) -> list[Hit]:
        if self.info is None:
            raise StoreError(f"{redact(self.url)} is empty: index documents first (adaptlab rag index DIR --store URL)")
        return hybrid_search(self._dense, self._lexical, self._rows, vector, text, k)

    def _rows(self, ids: list[int]) -> dict[int, tuple]:
        return {r[0]: r for r in self.conn.execute(
            f'SELECT id, source, ordinal, start, "end", text FROM {PREFIX}_chunks WHERE id = ANY(%s)', (ids,))}

    def close(self) -> None:
        self.conn.close()
