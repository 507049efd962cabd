"""Name -> component lookups shared by every registry (methods, objectives, eval tasks, suites, ...)."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name no registry entry has; the message lists the valid ones."""


def lookup(table: dict[str, T], name: str, what: str, hint: str = "") -> T:
    """`table[name]`; an unknown name is an `UnknownNameError` that lists the valid ones (and `hint`)."""
    if name not in table:
        raise UnknownNameError(f"unknown {what} {name!r}; choose one of: {', '.join(sorted(table))}"
                               + (f" {hint}" if hint else ""))
    return table[name]
