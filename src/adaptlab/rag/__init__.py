"""Retrieval-augmented generation: ingest -> chunk -> embed -> store -> retrieve (hybrid, RRF) -> answer.

`index.sync` brings a store in line with a corpus (incremental, resumable); `answer.ask` answers with
[n] citations; `evaluate` compares closed-book and RAG on SQuAD v1.1 dev. Stores: `store.open_store`
(an embedded SQLite+HNSW file, or PostgreSQL+pgvector).
"""
