"""The rag route: the base model answers each test item with sources retrieved from the task's corpus.

The corpus (`task.corpus`: folders or files) is indexed with the rag package into an embedded store under
the run folder, one store per corpus and chunking settings; indexing is incremental (`rag.index.sync`), so
a rerun embeds nothing. Each item's own prompt is its question: retrieval (dense + BM25, fused by RRF)
searches with it and `rag.answer.sources_context` asks it with the top-k sources, through the same
`evaluate_task` as every other route. The route's deployment cost is its index: the time the build took and
its size on disk (the store file and its vector index).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

from adaptlab.eval.runner import ContextBuilder
from adaptlab.eval.tasks import Task

BUILD_FILE = "build.json"      # beside the store: what the last build that embedded anything took


def store_path(root: Path, corpus: list[str], rag: dict) -> Path:
    """The store file for this corpus and these settings (the retrieval depth and style do not change it)."""
    key = {"corpus": sorted(str(Path(c).expanduser().resolve()) for c in corpus),
           **{k: rag[k] for k in ("embedder", "chunk_size", "overlap")}}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return root / f"index-{digest}" / "store.db"


def corpus_digest(corpus: list[str]) -> str:
    """sha256 over every corpus file's path and content hash: a changed corpus is a new cell."""
    from adaptlab.rag.ingest import scan

    parts = sorted(f"{f.source}:{f.digest}" for root in corpus for f in scan(Path(root))[0])
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def index_bytes(path: Path) -> int:
    """Bytes on disk of the store file and the files beside it that belong to it (vector index, journal)."""
    return sum(f.stat().st_size for f in path.parent.iterdir() if f.name.startswith(path.name) and f.is_file())


def build_index(store, embedder, corpus: list[str], rag: dict, record: Path) -> dict:
    """Bring the store in line with the corpus; returns the build time and chunk counts. The time of the
    last build that embedded anything is kept in `record`, so a cached index still reports what it cost."""
    from adaptlab.rag.index import folder_documents, sync

    start, written, total, skipped = time.perf_counter(), 0, 0, []
    for root in corpus:
        docs, skipped_here, scope = folder_documents(Path(root))
        report = sync(store, embedder, docs, scope, chunk_size=rag["chunk_size"], overlap=rag["overlap"])
        written, total = written + report.chunks_written, report.chunks_total
        skipped += [s.source for s in skipped_here + report.skipped]
    seconds = time.perf_counter() - start
    if written or not record.exists():
        record.write_text(json.dumps({"build_s": seconds, "chunks": total}), encoding="utf-8")
    built = json.loads(record.read_text(encoding="utf-8"))
    return {"index_build_s": built["build_s"], "index_sync_s": seconds, "chunks": total, "chunks_embedded": written,
            "skipped_files": skipped}


def with_questions(task: Task) -> Task:
    """The task with each sample's own prompt as its question (`meta["question"]`, what sources_context asks)."""
    build = task.build
    return replace(task, build=lambda p: [replace(s, meta={**s.meta, "question": s.context}) for s in build(p)])


def retrieving_context(tokenizer, store, embedder, k: int, style: str) -> ContextBuilder:
    """A context builder that retrieves the top-k chunks for each selected sample, then builds its prompt
    with `sources_context`."""
    from adaptlab.rag.answer import retrieve, sources_context

    def build(samples):
        hits = retrieve(store, embedder, [s.meta["question"] for s in samples], k)
        return sources_context(tokenizer, {s.id: h for s, h in zip(samples, hits)}, style)(samples)
    return build


def settings(rag: dict) -> str:
    """The retriever settings as the report names them."""
    return (f"hybrid dense+BM25 (RRF), k={rag['k']}, {rag['embedder']}, chunks {rag['chunk_size']}/{rag['overlap']} "
            f"tokens, style {rag['style']}")
