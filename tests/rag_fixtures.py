"""Fixtures for the RAG tests: a real PostgreSQL+pgvector server (pgserver), a store of each backend,
and a fast deterministic embedder (hashed bag of words) for tests that do not need real semantics.

Test modules load them with `pytest_plugins = ["tests.rag_fixtures"]`.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from functools import cached_property

import numpy as np
import pytest

from adaptlab.rag.embed import resolve_embedder
from adaptlab.rag.store import open_store

_db_ids = itertools.count()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A PostgreSQL 16 + pgvector server started from the pgserver package; stopped after the session."""
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server
    server.cleanup()


def fresh_pg_url(server) -> str:
    """A new empty database on the test server, so each test starts from nothing."""
    name = f"rag_test_{next(_db_ids)}"
    server.psql(f"CREATE DATABASE {name};")
    return server.get_uri(name)


@pytest.fixture(params=["embedded", "pgvector"])
def store_url(request, tmp_path):
    """The URL of a fresh store of each backend: the SAME test runs against both."""
    if request.param == "embedded":
        return str(tmp_path / "store.db")
    return fresh_pg_url(request.getfixturevalue("pg_server"))


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


class HashEmbedder:
    """Deterministic stand-in for a sentence embedder: hashed bag of lower-cased words, L2-normalised.

    Texts that share words get similar vectors, which is all the store and index tests need; it uses the
    real MiniLM tokenizer so chunking is the same as in production.
    """

    max_tokens = 256

    def __init__(self, dim: int = 64, name: str = "hash-bow") -> None:
        self.dim, self.name, self.calls = dim, name, 0

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(resolve_embedder("all-MiniLM-L6-v2"))

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


@pytest.fixture
def hash_embedder():
    return HashEmbedder()


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing `text` in Helvetica (ASCII only), with a correct xref table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
                b"/Resources << /Font << /F1 5 0 R >> >> >>"),
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def write_corpus(root) -> dict[str, str]:
    """A small mixed-format corpus plus files that must be skipped; returns {file name: distinctive word}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cats.txt").write_text("Cats are small carnivorous mammals. The domestic cat purrs when content.\n")
    (root / "rivers.md").write_text("# Rivers\n\nThe Danube flows through Vienna and Budapest into the Black Sea.\n")
    (root / "page.html").write_text("<html><head><title>Volcano</title><script>var hidden = 'zzsecret';</script>"
                                    "</head><body><p>Mount Etna is an active volcano in Sicily.</p></body></html>")
    (root / "report.pdf").write_bytes(minimal_pdf("Photosynthesis converts sunlight into chemical energy."))
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (root / "broken.txt").write_bytes(b"text\x00with\x00nul bytes")
    (root / "latin1.md").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (root / ".git").mkdir(exist_ok=True)
    (root / ".git" / "config").write_text("hidden folder, never indexed")
    return {"cats.txt": "purrs", "rivers.md": "Danube", "page.html": "Etna", "report.pdf": "Photosynthesis"}
