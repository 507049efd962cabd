"""Ingest, chunking and incremental indexing, against both stores."""

from __future__ import annotations

import itertools

import pytest

from adaptlab.rag import ingest
from adaptlab.rag.chunk import chunk_text, window_bounds
from adaptlab.rag.index import EmptyCorpusError, folder_documents, sync
from adaptlab.rag.store import StoreError
from tests.rag_fixtures import HashEmbedder, write_corpus

pytest_plugins = ["tests.rag_fixtures"]  # pg_server, store_url, store, hash_embedder


def index(store, emb, root, **kw):
    docs, skipped, scope = folder_documents(root)
    report = sync(store, emb, docs, scope, **kw)
    report.skipped = skipped + report.skipped
    return report


def test_window_bounds_closed_form():
    assert window_bounds(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert window_bounds(3, 4, 1) == [(0, 3)]
    assert window_bounds(0, 4, 1) == []
    with pytest.raises(ValueError, match="overlap"):
        window_bounds(10, 4, 4)


def test_chunks_keep_exact_offsets_and_overlap(hash_embedder):
    text = " ".join(f"word{i}" for i in range(300)) + "\n\nÜnïcode tail é."
    chunks = chunk_text("doc", text, hash_embedder.tokenizer, size=50, overlap=10)
    assert len(chunks) > 5 and [c.ordinal for c in chunks] == list(range(len(chunks)))
    for a, b in itertools.pairwise(chunks):
        assert text[a.start:a.end] == a.text and b.start < a.end  # consecutive windows overlap
        assert len(hash_embedder.tokenizer(a.text, add_special_tokens=False)["input_ids"]) <= 50
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


def test_html_reader_keeps_visible_text_only():
    text = ingest.read_html(b"<html><head><title>T</title><style>p{}</style><script>x=1</script></head>"
                            b"<body><p>a &amp;  b</p><ul><li>c</li></ul></body></html>")
    assert text == "T\n\na & b\n\nc"


def test_folder_of_mixed_formats(store, hash_embedder, tmp_path):
    words = write_corpus(tmp_path / "docs")
    report = index(store, hash_embedder, tmp_path / "docs")
    indexed = {s.rsplit("/", 1)[1] for s in store.sources()}
    assert indexed == set(words)
    skipped = {s.path.rsplit("/", 1)[1]: s.reason for s in report.skipped}
    assert set(skipped) == {"image.png", "broken.txt", "latin1.md"}
    assert "binary" in skipped["broken.txt"] and "UTF-8" in skipped["latin1.md"] and ".png" in skipped["image.png"]
    for name, word in words.items():
        hits = store.search(None, word, k=1)
        assert hits and hits[0].chunk.source.endswith(name) and word in hits[0].chunk.text
    assert not store.search(None, "zzsecret", k=3)  # script content is not text


def test_incremental_reindex(store, tmp_path):
    emb = HashEmbedder()
    root = tmp_path / "docs"
    write_corpus(root)
    first = index(store, emb, root)
    assert len(first.added) == 4 and first.chunks_total == first.chunks_written
    calls = emb.calls
    again = index(store, emb, root)
    assert (again.added, again.updated, again.removed, again.unchanged) == ([], [], [], 4) and emb.calls == calls
    (root / "cats.txt").write_text("Cats sleep sixteen hours a day.")
    (root / "rivers.md").unlink()
    (root / "new.txt").write_text("Owls hunt at night.")
    third = index(store, emb, root)
    assert [p.rsplit("/", 1)[1] for p in third.updated] == ["cats.txt"]
    assert [p.rsplit("/", 1)[1] for p in third.added] == ["new.txt"]
    assert [p.rsplit("/", 1)[1] for p in third.removed] == ["rivers.md"]
    assert emb.calls == calls + 2
    assert not store.search(None, "Danube", k=3) and not store.search(None, "purrs", k=3)
    assert store.search(None, "sixteen", k=1)[0].chunk.source.endswith("cats.txt")


def test_other_folders_in_the_same_store_are_kept(store, hash_embedder, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.txt").write_text("alpha document")
    (tmp_path / "b" / "y.txt").write_text("beta document")
    index(store, hash_embedder, tmp_path / "a")
    index(store, hash_embedder, tmp_path / "b")
    assert len(store.sources()) == 2


class FailingEmbedder(HashEmbedder):
    """Dies after `budget` texts, like a run killed half way."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget

    def encode(self, texts):
        if self.calls + len(texts) > self.budget:
            raise KeyboardInterrupt
        return super().encode(texts)


def test_interrupted_run_resumes_without_half_written_sources(store, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(10):
        (root / f"d{i}.txt").write_text(f"document number {i} " * (20 + i))
    with pytest.raises(KeyboardInterrupt):
        index(store, FailingEmbedder(budget=5), root, batch_chunks=2)
    done = store.sources()
    assert 0 < len(done) < 10
    per_source = {s: [h.chunk.ordinal for h in store.search(None, f"number {s[-5]}", k=50) if h.chunk.source == s]
                  for s in done}
    assert all(sorted(v) == list(range(len(v))) and v for v in per_source.values())  # whole sources only
    emb = HashEmbedder()
    report = index(store, emb, root)
    assert report.unchanged == len(done) and len(report.added) == 10 - len(done)
    assert emb.calls == 10 - len(done) and len(store.sources()) == 10


def test_empty_corpus_and_wrong_embedder_change_nothing(store, hash_embedder, tmp_path):
    root = tmp_path / "docs"
    write_corpus(root)
    index(store, hash_embedder, root)
    before = (store.sources(), store.count())
    for f in list(root.iterdir()):
        if f.is_file():
            f.unlink()
    with pytest.raises(EmptyCorpusError, match="store is unchanged"):
        index(store, hash_embedder, root)
    write_corpus(root)
    with pytest.raises(StoreError, match="64-d"):
        index(store, HashEmbedder(dim=16), root)
    assert (store.sources(), store.count()) == before


def test_changing_chunk_settings_rechunks(store, hash_embedder, tmp_path):
    root = tmp_path / "docs"
    write_corpus(root)
    index(store, hash_embedder, root)
    report = index(store, hash_embedder, root, chunk_size=8, overlap=2)
    assert len(report.updated) == 4 and report.chunks_total > 4
