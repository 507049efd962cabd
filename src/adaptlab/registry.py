"""Name -> component lookups shared by every registry (methods, objectives, ...)."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def lookup(table: dict[str, T], name: str, what: str) -> T:
    """`table[name]`; an unknown name is an error that lists the valid ones."""
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; choose one of: {', '.join(sorted(table))}")
    return table[name]
