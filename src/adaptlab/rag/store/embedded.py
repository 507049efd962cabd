"""The embedded store: one SQLite file (chunks, vectors, FTS5 BM25 index) plus a usearch HNSW file beside it.

SQLite is the source of truth: chunks, their vectors (float32 blobs) and each source's hash change
in one transaction. The HNSW file (`<db>.usearch`) is derived from it and replaced atomically after
each commit; SQLite's `generation` counter says which commit the file reflects. If a run dies
between the two, the next open finds the counters differ and repairs the index from SQLite (adds
missing ids, removes stale ones), so an interrupted run never leaves a half-written store.
Writers (and a repair) hold an exclusive file lock (`<db>.lock`) from the transaction's start until the
HNSW file is saved, and reload the index when another process moved the generation, so two indexers on
one store never save a stale copy marked current.
Lexical search is FTS5's BM25 (Robertson & Zaragoza 2009) with the Porter stemmer.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from adaptlab.rag.chunk import Chunk
from adaptlab.rag.store.ann import VectorIndex
from adaptlab.rag.store.base import Hit, StoreError, StoreInfo, check_info, check_vectors, hybrid_search

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources(source TEXT PRIMARY KEY, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
  id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, ordinal INTEGER NOT NULL,
  start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
  text, content='chunks', content_rowid='id', tokenize='porter unicode61');
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
  INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
  INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
"""


def fts_query(text: str) -> str:
    """An FTS5 OR-query of the text's words, each quoted so no word is read as FTS syntax."""
    words = dict.fromkeys(re.findall(r"\w+", text.lower()))
    return " OR ".join(f'"{w}"' for w in words)


class EmbeddedStore:
    """Store in `path` (SQLite) and `path.usearch` (HNSW); no server needed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.index_path = self.path.with_name(self.path.name + ".usearch")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path} is not an adaptlab store ({e})") from None
        self._depth = 0
        self._dirty = False
        self._vectors: VectorIndex | None = None
        self._vectors_generation = -1     # the generation the cached index reflects
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            self._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            self.db.close()
            raise StoreError(f"cannot open the store's lock file {lock} ({e.strerror}); the folder must be writable") from None
        self._lock_depth = 0

    # --- metadata -------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def info(self) -> StoreInfo | None:
        embedder, dim = self._meta("embedder"), self._meta("dim")
        return StoreInfo(embedder, int(dim)) if embedder and dim else None

    def set_info(self, info: StoreInfo) -> None:
        check_info(self.info, info, str(self.path))
        if self.info is None:
            with self.batch():
                self._set_meta("embedder", info.embedder)
                self._set_meta("dim", str(info.dim))

    def sources(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT source, digest FROM sources"))

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    # --- the vector index, derived from SQLite ----------------------------------------------------
    def _generation(self) -> int:
        return int(self._meta("generation") or 0)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The store's write lock across processes (re-entrant within this object)."""
        if self._lock_depth == 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @property
    def vectors(self) -> VectorIndex:
        """The HNSW index of the last commit (reloaded when another process committed since)."""
        if self._vectors is None or (self._depth == 0 and self._vectors_generation != self._generation()):
            self._vectors = self._load_vectors()
        return self._vectors

    def _load_vectors(self) -> VectorIndex:
        info = self.info
        if info is None:
            raise StoreError(f"{self.path} is empty: index documents first (adaptlab rag index DIR --store {self.path})")
        with self._exclusive():
            generation = self._generation()
            index = None
            if self.index_path.exists():
                try:
                    index = VectorIndex.load(self.index_path, info.dim)
                except (ValueError, RuntimeError) as e:
                    log.warning("rebuilding %s: %s", self.index_path, e)
            in_sync = index is not None and self._meta("index_generation") == str(generation)
            if index is None:
                index = VectorIndex(info.dim)
            if not in_sync:
                self._repair(index, generation)
        self._vectors_generation = generation
        return index

    def _repair(self, index: VectorIndex, generation: int) -> None:
        """Make the HNSW index hold exactly SQLite's chunk ids, then persist it (under the write lock)."""
        have = set(index.keys().tolist())
        want = {row[0] for row in self.db.execute("SELECT id FROM chunks")}
        stale, missing = np.array(sorted(have - want)), sorted(want - have)
        index.remove(stale)
        for lo in range(0, len(missing), 4096):
            ids = missing[lo:lo + 4096]
            rows = self.db.execute(f"SELECT id, vector FROM chunks WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()
            index.add(np.array([r[0] for r in rows]), np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))
        if len(stale) or missing:
            log.info("repaired %s from %s: %d stale and %d missing vectors", self.index_path.name, self.path.name,
                     len(stale), len(missing))
        self._save_vectors(index, generation)

    def _save_vectors(self, index: VectorIndex, generation: int) -> None:
        index.save(self.index_path)
        self._set_meta("index_generation", str(generation))
        self._vectors_generation = generation

    # --- writes ----------------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        with self._exclusive():
            if self._depth == 0:
                self.db.execute("BEGIN IMMEDIATE")
                if self.info is not None:
                    _ = self.vectors  # load (or repair) from the committed state before this batch writes
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self.db.execute("ROLLBACK")
                    self._vectors, self._dirty = None, False  # the in-memory index may hold rolled-back ids
                raise
            self._depth -= 1
            if self._depth == 0:
                self._commit()

    def _commit(self) -> None:
        """Commit, then save the HNSW file as that commit's generation (still under the write lock)."""
        generation = self._generation() + 1
        if self._dirty:
            self._set_meta("generation", str(generation))
        self.db.execute("COMMIT")
        if self._dirty:
            self._dirty = False
            self._save_vectors(self._vectors, generation)

    def _remove_source(self, source: str) -> None:
        old = np.array([r[0] for r in self.db.execute("SELECT id FROM chunks WHERE source = ?", (source,))])
        if len(old):
            self.vectors.remove(old)
            self.db.execute("DELETE FROM chunks WHERE source = ?", (source,))
            self._dirty = True

    def upsert(self, source: str, digest: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        vectors = check_vectors(self.info, chunks, vectors, str(self.path))
        with self.batch():
            self._remove_source(source)
            ids = []
            for chunk, vector in zip(chunks, vectors):
                cur = self.db.execute('INSERT INTO chunks(source, ordinal, start, "end", text, vector) VALUES (?,?,?,?,?,?)',
                                      (source, chunk.ordinal, chunk.start, chunk.end, chunk.text, vector.tobytes()))
                ids.append(cur.lastrowid)
            self.vectors.add(np.array(ids, dtype=np.int64), vectors)
            self._dirty = self._dirty or bool(ids)
            self.db.execute("INSERT OR REPLACE INTO sources(source, digest) VALUES (?, ?)", (source, digest))

    def delete(self, source: str) -> None:
        with self.batch():
            if self.info is not None:
                self._remove_source(source)
            self.db.execute("DELETE FROM sources WHERE source = ?", (source,))

    # --- reads -----------------------------------------------------------------------------------
    def _dense(self, vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        return self.vectors.search(vector, n)

    def _lexical(self, text: str, n: int) -> list[tuple[int, float]]:
        query = fts_query(text)
        if not query:
            return []
        rows = self.db.execute("SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? "
                               "ORDER BY s LIMIT ?", (query, n))
        return [(rowid, -score) for rowid, score in rows]

    def search(self, vector: np.ndarray | None, text: str | None, k: int) -> list[Hit]:
        return hybrid_search(self._dense, self._lexical, self._rows, vector, text, k)

    def _rows(self, ids: list[int]) -> dict[int, tuple]:
        return {r[0]: r for r in self.db.execute(
            f'SELECT id, source, ordinal, start, "end", text FROM chunks WHERE id IN ({",".join("?" * len(ids))})', ids)}

    def close(self) -> None:
        self.db.close()
        os.close(self._lock_fd)
