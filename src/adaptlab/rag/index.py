"""Bring a store in line with a corpus: embed new and changed sources, drop deleted ones.

A source is re-embedded only when its content hash (plus the chunking settings) differs from the
one stored. Sources are written in batches, each one atomic, so an interrupted run leaves whole
sources and the next run resumes where it stopped. Errors that would lose data (an empty corpus,
an embedder that does not match the store) are raised before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.rag import ingest
from adaptlab.rag.chunk import Chunk, chunk_text
from adaptlab.rag.embed import Embedder
from adaptlab.rag.ingest import Skipped, UnreadableError
from adaptlab.rag.store import Store, StoreInfo

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (documents done, documents to do)


class EmptyCorpusError(ValueError):
    """No readable document: refusing to index, since that would empty the store."""


@dataclass(frozen=True)
class Document:
    source: str
    digest: str
    load: Callable[[], str]  # lazy: files are parsed only when their hash changed


@dataclass
class IndexReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    chunks_written: int = 0
    chunks_total: int = 0


def folder_documents(root: Path) -> tuple[list[Document], list[Skipped], str]:
    """Documents under `root`, the files skipped, and the scope (path prefix) the folder owns in a store."""
    files, skipped = ingest.scan(root)
    docs = [Document(f.source, f.digest, lambda f=f: ingest.read(f)) for f in files]
    resolved = root.expanduser().resolve()
    scope = str(resolved) if resolved.is_file() else str(resolved).rstrip("/") + "/"
    return docs, skipped, scope


def text_documents(items: Iterable[tuple[str, str]]) -> list[Document]:
    """Documents from (source, text) pairs, e.g. a QA data set's paragraphs."""
    return [Document(source, ingest.content_hash(text.encode()), lambda text=text: text) for source, text in items]


def _embed_and_write(store: Store, embedder: Embedder, pending: Sequence[tuple[Document, str, list[Chunk]]]) -> int:
    vectors = embedder.encode([c.text for _, _, chunks in pending for c in chunks])
    offset = 0
    with store.batch():
        for doc, digest, chunks in pending:
            store.upsert(doc.source, digest, chunks, vectors[offset:offset + len(chunks)])
            offset += len(chunks)
    return offset


def sync(store: Store, embedder: Embedder, documents: Sequence[Document], scope: str,
         chunk_size: int = 200, overlap: int = 40, batch_chunks: int = 256,
         progress: Progress | None = None) -> IndexReport:
    """Index `documents` into `store`; sources under `scope` that are not in `documents` are removed."""
    if not documents:
        raise EmptyCorpusError(f"no readable documents in {scope}: nothing was indexed and the store is unchanged")
    if chunk_size > embedder.max_tokens:
        raise ValueError(f"chunk size {chunk_size} exceeds what {embedder.name} reads ({embedder.max_tokens} tokens)")
    store.set_info(StoreInfo(embedder.name, embedder.dim))
    settings = f":{chunk_size}/{overlap}"  # new chunking settings re-chunk every source
    existing = store.sources()
    wanted = {d.source for d in documents}
    report = IndexReport()
    todo = [d for d in documents if existing.get(d.source) != d.digest + settings]
    report.unchanged = len(documents) - len(todo)
    stale = [s for s in existing if s.startswith(scope) and s not in wanted]
    if stale:
        with store.batch():
            for source in stale:
                store.delete(source)
        report.removed = stale
    pending: list[tuple[Document, str, list[Chunk]]] = []
    n_pending = 0
    for done, doc in enumerate(todo, start=1):
        try:
            text = doc.load()
        except UnreadableError as e:
            report.skipped.append(Skipped(doc.source, str(e)))
            continue
        chunks = chunk_text(doc.source, text, embedder.tokenizer, chunk_size, overlap)
        pending.append((doc, doc.digest + settings, chunks))
        n_pending += len(chunks)
        (report.updated if doc.source in existing else report.added).append(doc.source)
        if n_pending >= batch_chunks or done == len(todo):
            report.chunks_written += _embed_and_write(store, embedder, pending)
            pending, n_pending = [], 0
        if progress:
            progress(done, len(todo))
    if pending:
        report.chunks_written += _embed_and_write(store, embedder, pending)
    report.chunks_total = store.count()
    return report
