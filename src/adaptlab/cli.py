"""The `adaptlab` command: each subcommand parses its options, calls the library, renders the result.

Subcommand groups live in `adaptlab/commands/<area>.py`, each exposing a `typer.Typer` called `app`
(or plain command functions); this file only mounts them.
"""

from __future__ import annotations

import typer

from adaptlab.logs import setup_cli_logging

app = typer.Typer(help="Adapt a language model to your task by every route, and measure which one is worth it.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="show debug logs and the libraries' own "
                                      "progress bars and warnings")) -> None:
    setup_cli_logging(verbose)


def _mount() -> None:
    # one line per command module; each module owns its own options and rendering
    from adaptlab.commands import core
    core.register(app)
    # --- command modules (one line each) ---
    from adaptlab.commands import methods; methods.register(app)
    from adaptlab.commands import prompt; prompt.register(app)
    from adaptlab.commands import eval; eval.register(app)
    from adaptlab.commands import rag; rag.register(app)
    from adaptlab.commands import serve; serve.register(app)
    from adaptlab.commands import export; export.register(app)
    from adaptlab.commands import chat; chat.register(app)
    from adaptlab.commands import feedback; feedback.register(app)
    from adaptlab.commands import compare; compare.register(app)
    from adaptlab.commands import plan; plan.register(app)


_mount()

if __name__ == "__main__":
    app()
