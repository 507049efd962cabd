"""Core commands: models, data, train."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Mount the core commands on the main app."""
