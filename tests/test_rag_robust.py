"""Stores never lose rows: two indexers at once, links out of the folder, broken PDFs, unreadable files,
and PostgreSQL passwords that never reach the screen."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.rag.index import folder_documents, sync
from adaptlab.rag.store import open_store, redact
from tests.rag_fixtures import HashEmbedder

pytest_plugins = ["tests.rag_fixtures"]  # pg_server, store_url, store, hash_embedder


def _index_folder(store_path: str, folder: str) -> None:
    store = open_store(store_path)
    try:
        docs, _, scope = folder_documents(Path(folder))
        sync(store, HashEmbedder(), docs, scope, chunk_size=32, overlap=0, batch_chunks=1)
    finally:
        store.close()


def _folder(root: Path, name: str, n: int) -> Path:
    folder = root / name
    folder.mkdir()
    for i in range(n):
        (folder / f"{name}-{i}.txt").write_text(" ".join(f"{name} document {i} word {j}" for j in range(12)))
    return folder


def test_two_indexers_at_once_lose_no_vector(tmp_path, hash_embedder):
    store_path = str(tmp_path / "store.db")
    _index_folder(store_path, str(_folder(tmp_path, "seed", 2)))     # the store exists before the race
    folders = [_folder(tmp_path, name, 20) for name in ("alpha", "beta")]
    hash_embedder.tokenizer  # noqa: B018 - loaded before forking
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_index_folder, args=(store_path, str(f))) for f in folders]
    [p.start() for p in procs]
    [p.join(120) for p in procs]
    assert [p.exitcode for p in procs] == [0, 0]
    ids = {row[0] for row in sqlite3.connect(store_path).execute("SELECT id FROM chunks")}
    store = open_store(store_path)
    try:
        assert set(store.vectors.keys().tolist()) == ids and len(ids) > 40
        assert {Path(s).parent.name for s in store.sources()} == {"seed", "alpha", "beta"}
    finally:
        store.close()


def test_links_out_of_the_folder_are_skipped_and_reported(tmp_path, hash_embedder):
    secret = tmp_path / "secret.txt"
    secret.write_text("the password is hunter2")
    corpus = _folder(tmp_path, "docs", 2)
    (corpus / "innocent.txt").symlink_to(secret)
    (corpus / "inside.txt").symlink_to(corpus / "docs-0.txt")     # a link within the folder is fine
    docs, skipped, scope = folder_documents(corpus)
    assert [s.path for s in skipped] == [str(corpus / "innocent.txt")] and "outside the folder" in skipped[0].reason
    store = open_store(str(tmp_path / "store.db"))
    try:
        sync(store, hash_embedder, docs, scope)
        assert not any("hunter2" in hit.chunk.text for hit in store.search(None, "password hunter2", 10))
        assert str(corpus / "inside.txt") in store.sources()
    finally:
        store.close()


@pytest.mark.parametrize("error", [AttributeError("'NullObject' has no attribute 'get'"), IndexError("list index"),
                                   RecursionError("maximum recursion depth exceeded")])
def test_a_broken_pdf_is_skipped_and_the_run_goes_on(tmp_path, hash_embedder, monkeypatch, error):
    import pypdf

    def broken(*args, **kwargs):
        raise error

    corpus = _folder(tmp_path, "docs", 2)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 whatever pypdf trips on")
    monkeypatch.setattr(pypdf, "PdfReader", broken)
    docs, _, scope = folder_documents(corpus)
    store = open_store(str(tmp_path / "store.db"))
    try:
        report = sync(store, hash_embedder, docs, scope)
    finally:
        store.close()
    assert [s.path for s in report.skipped] == [str(corpus / "broken.pdf")]
    assert type(error).__name__ in report.skipped[0].reason
    assert len(report.added) == 2


def test_an_unreadable_file_keeps_its_rows(tmp_path, hash_embedder, monkeypatch):
    corpus = _folder(tmp_path, "docs", 3)
    store = open_store(str(tmp_path / "store.db"))
    try:
        sync(store, hash_embedder, *_docs_scope(corpus))
        before = store.count()
        locked = corpus / "docs-1.txt"
        real = Path.read_bytes

        def read_bytes(path):
            if path == locked:
                raise PermissionError(13, "Permission denied")
            return real(path)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
        report = sync(store, hash_embedder, *_docs_scope(corpus))
        assert report.removed == [] and [s.path for s in report.skipped] == [str(locked)]
        assert "Permission denied" in report.skipped[0].reason
        assert store.count() == before and str(locked) in store.sources()
    finally:
        store.close()


def _docs_scope(corpus: Path):
    docs, _, scope = folder_documents(corpus)
    return docs, scope


@pytest.mark.parametrize("url", [
    "postgresql://bob:s3cretpw@db.example/rag",
    "postgresql://:s3cretpw@db.example/rag",                       # empty user
    "postgresql://bob:s3c@ret:pw@db.example:5432/rag",              # '@' and ':' inside the password
    "postgresql://bob@db.example/rag?password=s3cretpw&sslmode=require",
    "postgres://bob@db.example/rag?sslmode=require&PASSWORD=s3cretpw",
    "postgresql://bob@db.example/rag?sslpassword=s3cretpw",
    "host=db.example user=bob password='s3cret pw' dbname=rag",
])
def test_postgres_passwords_are_never_shown(url):
    shown = redact(url)
    assert "s3c" not in shown and "pw" not in shown.replace("password", "")
    assert "db.example" in shown and "***" in shown


def test_cli_prints_no_password_and_prefers_pgpassword(tmp_path):
    corpus = _folder(tmp_path, "docs", 1)
    runner = CliRunner()
    for url in ("postgresql://bob:s3c@ret@127.0.0.1:1/rag", "postgresql://bob@127.0.0.1:1/rag?password=s3cretpw"):
        result = runner.invoke(app, ["rag", "index", str(corpus), "--store", url])
        assert result.exit_code != 0
        assert "s3c" not in result.output and "ret@" not in result.output, result.output
    help_text = runner.invoke(app, ["rag", "index", "--help"], env={"COLUMNS": "200"}).output
    assert "PGPASSWORD" in help_text and "user:pass@" not in help_text
