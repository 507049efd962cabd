"""The `adaptlab` command: each subcommand parses its options, calls the library, renders the result.

Subcommand groups live in `adaptlab/commands/<area>.py`, each exposing a `typer.Typer` called `app`
(or plain command functions); this file only mounts them.
"""

from __future__ import annotations

import importlib

import typer

from adaptlab.logs import setup_cli_logging

app = typer.Typer(help="Adapt a language model to your task by every route, and measure which one is worth it.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="show debug logs and the libraries' own "
                                      "progress bars and warnings")) -> None:
    setup_cli_logging(verbose)


COMMANDS = ("core", "methods", "prompt", "eval", "rag", "serve", "export", "chat", "feedback", "compare", "plan")


def _mount() -> None:
    # a command is one module under adaptlab.commands that owns its options and rendering and registers itself
    for name in COMMANDS:
        importlib.import_module(f"adaptlab.commands.{name}").register(app)


_mount()

if __name__ == "__main__":
    app()
