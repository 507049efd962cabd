"""The Store contract, run against the embedded store and a real PostgreSQL+pgvector server."""

from __future__ import annotations

import numpy as np
import pytest

from adaptlab.rag.chunk import Chunk
from adaptlab.rag.store import StoreError, StoreInfo, open_store, rrf
from adaptlab.rag.store.embedded import EmbeddedStore, fts_query
from tests.rag_fixtures import HashEmbedder

DOCS = {
    "a.txt": ["The Danube flows through Vienna.", "Budapest lies on the Danube river."],
    "b.txt": ["Mount Etna is a volcano in Sicily."],
    "c.txt": ["Photosynthesis turns sunlight into sugar in plants."],
}

pytest_plugins = ["tests.rag_fixtures"]  # pg_server, store_url, store, hash_embedder


def fill(store, emb) -> None:
    store.set_info(StoreInfo(emb.name, emb.dim))
    for source, texts in DOCS.items():
        chunks = [Chunk(source, i, 0, len(t), t) for i, t in enumerate(texts)]
        store.upsert(source, "h-" + source, chunks, emb.encode(texts))


def sources_of(hits) -> list[str]:
    return [h.chunk.source for h in hits]


def test_rrf_matches_closed_form():
    fused = dict(rrf([[1, 2, 3], [3, 1]], k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)
    assert [i for i, _ in rrf([[1, 2, 3], [3, 1]])] == [1, 3, 2]


def test_fts_query_quotes_every_word():
    assert fts_query('What is "NEAR"(x) AND y?') == '"what" OR "is" OR "near" OR "x" OR "and" OR "y"'
    assert fts_query("?!") == ""


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_search_finds_the_matching_chunk(store, hash_embedder, mode):
    fill(store, hash_embedder)
    q = "which volcano is in Sicily"
    vector = hash_embedder.encode([q])[0] if mode != "lexical" else None
    hits = store.search(vector, q if mode != "dense" else None, k=2)
    assert hits[0].chunk.source == "b.txt" and hits[0].chunk.text == DOCS["b.txt"][0]
    # every chunk has a vector, but only chunks sharing a (non-stop) word match lexically
    assert len(hits) == 2 or mode == "lexical"
    if mode == "hybrid":
        assert hits[0].dense_rank == 1 and hits[0].lexical_rank == 1


def test_upsert_replaces_a_source_and_delete_removes_it(store, hash_embedder):
    fill(store, hash_embedder)
    assert store.count() == 4
    assert store.sources() == {s: "h-" + s for s in DOCS}
    text = "Vienna has coffee houses."
    store.upsert("a.txt", "h2", [Chunk("a.txt", 0, 0, len(text), text)], hash_embedder.encode([text]))
    assert store.count() == 3 and store.sources()["a.txt"] == "h2"
    hits = store.search(hash_embedder.encode(["Danube Budapest"])[0], "Danube Budapest", k=3)
    assert all("Danube" not in h.chunk.text for h in hits)
    store.delete("b.txt")
    assert "b.txt" not in store.sources() and store.count() == 2
    assert "b.txt" not in sources_of(store.search(hash_embedder.encode(["Etna"])[0], "Etna volcano", k=5))


def test_batch_is_atomic(store, hash_embedder):
    fill(store, hash_embedder)
    with pytest.raises(RuntimeError), store.batch():
        store.delete("a.txt")
        store.upsert("d.txt", "h", [Chunk("d.txt", 0, 0, 4, "oops")], hash_embedder.encode(["oops"]))
        raise RuntimeError("interrupted")
    assert store.sources() == {s: "h-" + s for s in DOCS} and store.count() == 4
    assert sources_of(store.search(hash_embedder.encode(["Danube"])[0], None, k=1)) == ["a.txt"]


def test_reopen_keeps_everything(store_url, hash_embedder):
    s = open_store(store_url)
    fill(s, hash_embedder)
    s.close()
    s = open_store(store_url)
    assert s.info == StoreInfo(hash_embedder.name, hash_embedder.dim) and s.count() == 4
    assert sources_of(s.search(hash_embedder.encode(["photosynthesis sunlight"])[0], "sunlight", 1)) == ["c.txt"]
    s.close()


@pytest.mark.parametrize("other", [HashEmbedder(dim=32), HashEmbedder(dim=64, name="other-model")])
def test_other_embedder_is_refused_and_nothing_changes(store, hash_embedder, other):
    fill(store, hash_embedder)
    with pytest.raises(StoreError, match="hash-bow"):
        store.set_info(StoreInfo(other.name, other.dim))
    assert store.count() == 4 and store.info.dim == 64


def test_wrong_vector_width_is_refused(store, hash_embedder):
    fill(store, hash_embedder)
    with pytest.raises(StoreError, match="32-d"):
        store.upsert("x", "h", [Chunk("x", 0, 0, 1, "x")], np.ones((1, 32), dtype=np.float32))
    assert store.count() == 4


def test_unreachable_postgres_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="cannot connect to postgresql://u:\\*\\*\\*@"):
        open_store(f"postgresql://u:secret@/db?host={tmp_path}&connect_timeout=2")


def test_unknown_scheme_lists_the_valid_ones():
    with pytest.raises(StoreError, match="postgresql://"):
        open_store("mongodb://x")


def test_embedded_index_file_is_repaired_after_a_crash(tmp_path, hash_embedder):
    path = tmp_path / "s.db"
    s = EmbeddedStore(path)
    fill(s, hash_embedder)
    s.close()
    saved = (tmp_path / "s.db.usearch").read_bytes()
    s = EmbeddedStore(path)
    s.delete("b.txt")  # committed to SQLite and the index file ...
    s.close()
    (tmp_path / "s.db.usearch").write_bytes(saved)  # ... then the file rolled back, as if the run died before saving it
    s = EmbeddedStore(path)
    s._set_meta("index_generation", "1")
    assert len(s.vectors) == 3  # repaired: the stale ids are gone
    assert "b.txt" not in sources_of(s.search(hash_embedder.encode(["Etna volcano"])[0], None, k=3))
    s.close()
    (tmp_path / "s.db.usearch").unlink()
    s = EmbeddedStore(path)
    assert sources_of(s.search(hash_embedder.encode(["photosynthesis sunlight"])[0], None, 1)) == ["c.txt"]
    s.close()


def test_embedded_store_rejects_a_foreign_file(tmp_path):
    bad = tmp_path / "notadb.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not an adaptlab store"):
        open_store(str(bad))
