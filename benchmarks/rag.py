"""RAG benchmark: (a) vector search at scale, (b) retrieval and answer quality on SQuAD v1.1 dev,
(c, full mode) how PostgreSQL+pgvector's HNSW build and latency grow with the number of vectors.

(a) Clustered synthetic 384-d vectors, like sentence embeddings (a mixture of low-rank Gaussian
    clusters on the unit sphere), plus held-out queries from the same mixture. Ours: the embedded
    store's usearch HNSW index (adaptlab.rag.store.ann). Baseline in the same run: faiss IndexFlatIP
    (exact), which also gives the ground truth for recall@10. Latency is one query at a time, one
    thread, for both.
(b) The 2,067 SQuAD dev paragraphs embedded with the builtin all-MiniLM-L6-v2 in an embedded store:
    recall@1/5/10 of BM25 (FTS5), dense and hybrid (RRF); exact match / F1 of the builtin
    smollm2-135m closed-book vs RAG (the top hybrid chunk) on a seeded sample of questions.

`--quick`: 100k vectors (efConstruction 48), the first 40 paragraphs (150 of their questions for recall, 2 for QA), no (c).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384
QUICK_EF_CONSTRUCTION = 48  # --quick builds a lighter graph to stay near 50 s (at 100k recall@10 stays >= 0.99)
QA_K = 1  # the 135M model answers best from one source (40 questions: EM 0.20 at k=1, 0.10 at k=2)


def clustered_vectors(n: int, dim: int = DIM, n_clusters: int = 1000, rank: int = 24, seed: int = 0) -> np.ndarray:
    """n unit vectors: x = normalize(c_j + B_j z + 0.05 e), z ~ N(0, I_rank), e ~ N(0, I_dim), cluster j uniform.

    Real embeddings concentrate near a union of low-dimensional pieces; a mixture of low-rank Gaussians
    reproduces that (isotropic noise alone would make every neighbour equally far)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    bases = rng.standard_normal((n_clusters, rank, dim), dtype=np.float32) * 0.25
    labels = rng.integers(0, n_clusters, n)
    out = np.empty((n, dim), dtype=np.float32)
    for j in range(n_clusters):
        rows = np.flatnonzero(labels == j)
        z = rng.standard_normal((len(rows), rank), dtype=np.float32)
        out[rows] = centers[j] + z @ bases[j] + 0.05 * rng.standard_normal((len(rows), dim), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def percentiles_ms(latencies: list[float]) -> tuple[float, float]:
    a = np.array(latencies) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def timed_queries(search, queries: np.ndarray) -> tuple[list[list[int]], list[float]]:
    results, lat = [], []
    for q in queries:
        t = time.perf_counter()
        results.append(search(q))
        lat.append(time.perf_counter() - t)
    return results, lat


def recall_vs_exact(found: list[list[int]], exact: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(f[:k]) & set(e[:k].tolist())) / k for f, e in zip(found, exact)]))


def vector_search(n: int, n_queries: int, n_baseline: int, ef_sweep: tuple[int, ...] = (),
                  connectivity: int | None = None, ef_construction: int | None = None) -> dict:
    import faiss

    from adaptlab.rag.store.ann import CONNECTIVITY, DTYPE, EXPANSION_ADD, EXPANSION_SEARCH, VectorIndex

    data = clustered_vectors(n + n_queries)
    base, queries = data[:n], data[n:]
    flat = faiss.IndexFlatIP(DIM)
    flat.add(base)
    _, exact = flat.search(queries, 10)  # ground truth (batched, all threads)
    faiss.omp_set_num_threads(1)
    _, flat_lat = timed_queries(lambda q: flat.search(q[None], 10)[1][0].tolist(), queries[:n_baseline])
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    m, efc = connectivity or CONNECTIVITY, ef_construction or EXPANSION_ADD
    index = VectorIndex(DIM, connectivity=m, expansion_add=efc)
    t = time.perf_counter()
    index.add(np.arange(n), base)
    build_s = time.perf_counter() - t
    sweep = {}
    for ef in sorted({*ef_sweep, EXPANSION_SEARCH}):   # ef trades latency for recall; the library default is one point
        index.index.expansion_search = ef
        found, lat = timed_queries(lambda q: [i for i, _ in index.search(q, 10)], queries)
        p50, p95 = percentiles_ms(lat)
        sweep[str(ef)] = {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "recall_at_10": round(recall_vs_exact(found, exact), 4)}
    default = sweep[str(EXPANSION_SEARCH)]
    b50, b95 = percentiles_ms(flat_lat)
    return {"n_vectors": n, "n_queries": n_queries, "n_baseline_queries": n_baseline, "build_s": round(build_s, 2),
            **default, "ef_search": EXPANSION_SEARCH, "ef_sweep": sweep,
            "baseline": "faiss IndexFlatIP (exact)", "baseline_p50_ms": round(b50, 3), "baseline_p95_ms": round(b95, 3),
            "index": f"usearch HNSW {DTYPE} M={m} efConstruction={efc}"}


def squad(n_paragraphs: int | None, n_recall: int | None, n_qa: int, store_path: Path) -> dict:
    from adaptlab.models import load_model
    from adaptlab.rag.embed import Embedder
    from adaptlab.rag.evaluate import evaluate, index_squad, retrieval, squad_paragraphs, squad_questions
    from adaptlab.rag.store import open_store

    emb = Embedder()
    store = open_store(str(store_path))
    paragraphs = squad_paragraphs(n_paragraphs)
    t = time.perf_counter()
    index_squad(store, emb, paragraphs)
    index_s = time.perf_counter() - t
    questions = squad_questions(n_recall, seed=0, sources={s for s, _ in paragraphs})
    t = time.perf_counter()
    recall, _ = retrieval(store, emb, questions, (1, 5, 10))
    retrieval_s = time.perf_counter() - t
    lm = load_model("smollm2-135m")
    sample = squad_questions(n_qa, seed=0, sources={s for s, _ in paragraphs})
    qa = evaluate(store, emb, lm.model, lm.tokenizer, sample, k=QA_K, ks=(QA_K,))
    store.close()
    return {"squad_paragraphs": len(paragraphs), "squad_questions": len(questions), "squad_index_s": round(index_s, 1),
            "squad_retrieval_s": round(retrieval_s, 1),
            "squad_recall": {m: {str(k): round(v, 4) for k, v in by_k.items()} for m, by_k in recall.items()},
            "squad_recall_at_5": {m: round(by_k[5], 4) for m, by_k in recall.items()},
            "squad_qa_questions": len(sample),
            "squad_em": {r: round(s["exact_match"], 4) for r, s in qa.scores.items()},
            "squad_f1": {r: round(s["f1"], 4) for r, s in qa.scores.items()},
            "squad_contains_answer": {r: round(s["contains_answer"], 4) for r, s in qa.scores.items()},
            "squad_qa_k": QA_K}


def pgvector_growth(sizes: list[int], n_queries: int = 200) -> dict:
    """HNSW build time, p95 latency and recall@10 of pgvector at growing sizes (CREATE INDEX after COPY)."""
    import faiss
    import pgserver
    import psycopg
    from pgvector.psycopg import register_vector

    from adaptlab.rag.store.pgvector import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M

    data = clustered_vectors(max(sizes) + n_queries, seed=1)
    queries = data[-n_queries:]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = pgserver.get_server(tmp, cleanup_mode="stop")
        try:
            conn = psycopg.connect(server.get_uri(), autocommit=True)
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute("SET maintenance_work_mem = '2GB'")
            conn.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")
            for n in sizes:
                base = data[:n]
                conn.execute("DROP TABLE IF EXISTS bench")
                conn.execute(f"CREATE TABLE bench(id int, embedding vector({DIM}))")
                with conn.cursor().copy("COPY bench(id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                    copy.set_types(["int4", "vector"])
                    for i, v in enumerate(base):
                        copy.write_row((i, v))
                t = time.perf_counter()
                conn.execute(f"CREATE INDEX ON bench USING hnsw (embedding vector_cosine_ops) "
                             f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")
                build_s = time.perf_counter() - t
                size_mb = conn.execute("SELECT pg_total_relation_size('bench') / 1e6").fetchone()[0]
                flat = faiss.IndexFlatIP(DIM)
                flat.add(base)
                _, exact = flat.search(queries, 10)
                found, lat = timed_queries(lambda q: [r[0] for r in conn.execute(
                    "SELECT id FROM bench ORDER BY embedding <=> %s LIMIT 10", (q,))], queries)
                p50, p95 = percentiles_ms(lat)
                out[str(n)] = {"build_s": round(build_s, 2), "p50_ms": round(p50, 3), "p95_ms": round(p95, 3),
                               "recall_at_10": round(recall_vs_exact(found, exact), 4), "table_mb": round(float(size_mb), 1)}
            conn.close()
        finally:
            server.cleanup()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k vectors and a SQuAD slice (< 50 s)")
    ap.add_argument("--vectors", type=int, default=None)
    ap.add_argument("--qa", type=int, default=None, help="questions for closed-book vs RAG exact match")
    ap.add_argument("--connectivity", type=int, default=None, help="HNSW M (default: the library's)")
    ap.add_argument("--ef-construction", type=int, default=None, help="HNSW efConstruction (default: the library's)")
    ap.add_argument("--parts", default="abc", help="which parts to run, e.g. `a` or `bc` (default: all)")
    args = ap.parse_args()
    n = args.vectors or (100_000 if args.quick else 1_000_000)
    result: dict = {"mode": "quick" if args.quick else "full", "parts": args.parts}
    t0 = time.perf_counter()
    if "a" in args.parts:
        result.update(vector_search(n, 200 if args.quick else 1000, 50, () if args.quick else (64, 128, 256, 512, 1024),
                                    args.connectivity, args.ef_construction or (QUICK_EF_CONSTRUCTION if args.quick else None)))
        print(json.dumps(result), flush=True)  # partial results, in case a long run is stopped
    if "b" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            result.update(squad(40 if args.quick else None, 150 if args.quick else None,
                                args.qa or (2 if args.quick else 200), Path(tmp) / "squad.db"))
        print(json.dumps(result), flush=True)
    if "c" in args.parts and not args.quick:
        result["pgvector_growth"] = pgvector_growth([10_000, 25_000, 50_000])
    result["note"] = ("quick mode: 100k vectors, efConstruction 48; SQuAD slice = first 40 paragraphs, 150 of their questions for "
                      "recall, 2 for QA; no pgvector growth" if args.quick else
                      "full mode: all 2,067 SQuAD dev paragraphs and 10,570 questions for recall")
    result["load_avg_1min"] = round(os.getloadavg()[0], 1)
    result["cpus"] = os.cpu_count()
    result["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
