"""Stores behind one interface; `open_store` picks the backend from the URL's scheme."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adaptlab.rag.store.base import Hit, Store, StoreError, StoreInfo, redact, rrf

DEFAULT_STORE = "adaptlab-rag.db"


def _pgvector(url: str) -> Store:
    from adaptlab.rag.store.pgvector import PgVectorStore

    return PgVectorStore(url)


def _embedded(path: str) -> Store:
    from adaptlab.rag.store.embedded import EmbeddedStore

    return EmbeddedStore(Path(path))


# URL scheme -> opener; anything without a registered scheme is a path to an embedded store file
BACKENDS: dict[str, Callable[[str], Store]] = {"postgresql": _pgvector, "postgres": _pgvector}


def open_store(url_or_path: str = DEFAULT_STORE) -> Store:
    """Open (creating if needed) the store at a postgresql:// URL or a local file path."""
    scheme, sep, _ = url_or_path.partition("://")
    if sep and scheme not in BACKENDS:
        raise StoreError(f"unknown store scheme {scheme!r}: use a file path or one of "
                         f"{', '.join(s + '://' for s in BACKENDS)}")
    return BACKENDS[scheme](url_or_path) if sep else _embedded(url_or_path)


__all__ = ["BACKENDS", "DEFAULT_STORE", "Hit", "Store", "StoreError", "StoreInfo", "open_store", "redact", "rrf"]
