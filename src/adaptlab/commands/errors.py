"""The one way a command reports a user's mistake: one red line on stderr and exit code 2, never a traceback.

`with user_errors(): ...` turns the library's errors about input (bad names, files, values) into
that line; `fail(message)` says one directly. Exit codes: 2 = user error (USER_ERROR), 1 = a check
refused the result (REFUSED, e.g. a merge whose logits drift too far).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

USER_ERROR = 2
REFUSED = 1
err = Console(stderr=True)
# what the library raises for bad input (UnknownNameError, ConfigError, SpecError are ValueErrors; missing files OSErrors)
INPUT_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError)


def fail(message: str, code: int = USER_ERROR) -> NoReturn:
    """Print `error: message` in red on stderr and exit with `code`."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def user_errors(*extra: type[Exception]) -> Iterator[None]:
    """Inside: the library's input errors (and `extra` types) end the command with `fail`."""
    try:
        yield
    except (*INPUT_ERRORS, *extra) as e:
        fail(str(e))
