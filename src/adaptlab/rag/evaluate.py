"""Closed-book vs RAG on SQuAD v1.1 dev: its 2,067 paragraphs are the corpus, its questions the test.

Retrieval is scored by recall@k: the share of questions whose gold paragraph is among the top k
chunks (for BM25 alone, dense alone and their RRF fusion). Answers are scored with SQuAD's exact
match and token F1 (Rajpurkar et al. 2016), closed-book (no sources), generated from the top-k sources,
and extractive (the sentence of those sources the question makes most likely), plus "contains answer"
(a gold answer occurs in the prediction), which credits right answers in long phrasing. Every route is
one eval task (`squad_task`) scored by `eval.runner.evaluate_task`; routes differ only in the context.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.data.builtin import read_rows
from adaptlab.eval.runner import evaluate_task
from adaptlab.eval.tasks import Protocol, Sample, Task
from adaptlab.models.registry import cache_dir
from adaptlab.rag.answer import STYLES, sentences, sources_context
from adaptlab.rag.embed import Embedder
from adaptlab.rag.index import IndexReport, Progress, sync, text_documents
from adaptlab.rag.store import Hit, Store

SCOPE = "squad:"
MODES = ("bm25", "dense", "hybrid")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]
    source: str  # the gold paragraph's source key in the store


@dataclass
class QAResult:
    n_questions: int
    k: int
    recall: dict[str, dict[int, float]]          # mode -> k -> recall@k
    scores: dict[str, dict[str, float]]          # closed_book | rag | extractive -> {exact_match, f1, contains_answer}
    rows: list[dict] = field(default_factory=list)


def squad_paragraphs(limit: int | None = None) -> list[tuple[str, str]]:
    """(source, text) of the SQuAD dev paragraphs, optionally only the first `limit`."""
    rows = list(read_rows("squad/corpus.jsonl.gz"))[:limit]
    return [(SCOPE + r["id"], r["text"]) for r in rows]


def squad_questions(limit: int | None = None, seed: int = 0, sources: set[str] | None = None) -> list[Question]:
    """A seeded random sample of dev questions (all of them if `limit` is None), optionally only on `sources`."""
    qs = [Question(r["id"], r["question"], list(r["answers"]), SCOPE + r["paragraph_id"])
          for r in read_rows("squad/dev.jsonl.gz")]
    if sources is not None:
        qs = [q for q in qs if q.source in sources]
    if limit is not None and limit < len(qs):
        qs = random.Random(seed).sample(qs, limit)
    return qs


def squad_store(embedder: str) -> str:
    """The cache file that holds the SQuAD paragraphs embedded by `embedder` (one store per embedder)."""
    return str(cache_dir() / "rag" / f"squad-{re.sub(r'[^A-Za-z0-9_.-]+', '_', embedder)}.db")


def index_squad(store: Store, embedder: Embedder, paragraphs: Sequence[tuple[str, str]],
                progress: Progress | None = None) -> IndexReport:
    """Index the paragraphs (incremental: a second run embeds nothing). Chunks are big enough to hold a
    whole paragraph, so a hit's source identifies its paragraph."""
    return sync(store, embedder, text_documents(paragraphs), SCOPE, chunk_size=256, overlap=32, progress=progress)


def recall_at_k(retrieved: Sequence[Sequence[str]], gold: Sequence[str], k: int) -> float:
    """Share of queries whose gold source is among their first k retrieved sources."""
    return sum(g in r[:k] for r, g in zip(retrieved, gold)) / max(len(gold), 1)


def retrieval(store: Store, embedder: Embedder, questions: Sequence[Question], ks: Sequence[int],
              modes: Sequence[str] = MODES) -> tuple[dict[str, dict[int, float]], list[list[Hit]]]:
    """recall@k per mode, and the hybrid hits per question (what RAG answers from)."""
    vectors = embedder.encode([q.question for q in questions])
    depth = max(ks)
    recall: dict[str, dict[int, float]] = {}
    hybrid: list[list[Hit]] = []
    for mode in modes:
        hits = [store.search(None if mode == "bm25" else v, None if mode == "dense" else q.question, depth)
                for v, q in zip(vectors, questions)]
        sources = [[h.chunk.source for h in hs] for hs in hits]
        recall[mode] = {k: recall_at_k(sources, [q.source for q in questions], k) for k in ks}
        if mode == "hybrid":
            hybrid = hits
    return recall, hybrid


QA_METRICS = {"exact_match": "exact_match", "f1": "f1", "contains_answer": "alias_match"}  # shown -> eval metric


def squad_task(questions: Sequence[Question], candidates: dict[str, list[str]] | None = None) -> Task:
    """The questions as one eval task scored by SQuAD exact match, token F1 and contains-answer.

    Without `candidates`: a short greedy answer (first line, extractor `short`); closed-book and RAG
    differ only in the context. With `candidates` (question id -> sentences of its sources): the
    extractive reader, the sentence with the highest PMI with the question (kind `extract`)."""
    samples = [Sample(q.id, q.question, list(q.answers), meta={"question": q.question},
                      choices=candidates.get(q.id, []) if candidates is not None else []) for q in questions]
    return Task("squad", "builtin:squad/dev (rajpurkar/squad v1.1)", "extract" if candidates is not None else "generate",
                "exact_match", 0, lambda _: samples, license="CC BY-SA 4.0", stop=("\n",),
                max_new_tokens=STYLES["short"].max_new_tokens, extract="short",
                also=tuple(m for m in QA_METRICS.values() if m != "exact_match"))


def evaluate(store: Store, embedder: Embedder, model, tokenizer, questions: Sequence[Question], k: int = 4,
             ks: Sequence[int] = (1, 5, 10), batch_size: int = 8,
             progress: Callable[[int], None] | None = None) -> QAResult:
    """Retrieval recall@ks, then three routes on the same questions, scored by the eval harness:
    closed-book and RAG (top-k hybrid chunks) generated answers, and the extractive reader over the
    same chunks."""
    recall, hits = retrieval(store, embedder, questions, sorted(set(ks) | {k}))
    top = {q.id: h[:k] for q, h in zip(questions, hits)}
    task = squad_task(questions)
    routes = {"closed_book": (task, sources_context(tokenizer, {}, "closed_book")),
              "rag": (task, sources_context(tokenizer, top, "short")),
              "extractive": (squad_task(questions, {i: [s for _, s in sentences(h)] for i, h in top.items()}), None)}
    results = {route: evaluate_task(model, tokenizer, t, Protocol(shots=0), build, batch_size=batch_size,
                                    progress=(lambda name, total: progress) if progress else None)
               for route, (t, build) in routes.items()}
    scores = {route: {name: r.metrics[m] / 100 for name, m in QA_METRICS.items()} for route, r in results.items()}
    preds = {route: [s.answer for s in r.scored] for route, r in results.items()}
    rows = [{"id": q.id, "question": q.question, "answers": q.answers, **{route: p[i] for route, p in preds.items()},
             "retrieved": [h.chunk.source for h in top[q.id]], "gold_retrieved": q.source in [h.chunk.source for h in top[q.id]]}
            for i, q in enumerate(questions)]
    return QAResult(len(questions), k, recall, scores, rows)


def plot(result: QAResult, path: Path) -> Path:
    """Two panels: EM, F1 and contains-answer closed-book vs RAG, and recall@k per retrieval mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    metrics = list(QA_METRICS)
    width = 0.8 / len(result.scores)
    for i, (route, scores) in enumerate(result.scores.items()):
        left.bar([m + i * width for m in range(len(metrics))], [100 * scores[m] for m in metrics], width, label=route)
    left.set_xticks([m + 0.4 - width / 2 for m in range(len(metrics))], ["exact match", "F1", "contains answer"])
    left.set_ylabel("%")
    left.set_title(f"SQuAD v1.1 dev, {result.n_questions} questions (RAG k={result.k})")
    left.legend()
    for mode, by_k in result.recall.items():
        ks = sorted(by_k)
        right.plot(ks, [100 * by_k[k] for k in ks], marker="o", label=mode)
    right.set_xlabel("k")
    right.set_ylabel("recall@k (%)")
    right.set_title("retrieval: gold paragraph in top k")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
