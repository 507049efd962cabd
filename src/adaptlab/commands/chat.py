"""`adaptlab chat`: talk to a model (optionally with an adapter) in the terminal, replies streamed."""

from __future__ import annotations

import typer
from rich.console import Console

from adaptlab.commands.errors import user_errors

console = Console()
HELP = "commands: /reset (forget the conversation), /system TEXT (set the system prompt), /exit"


def chat(model: str = typer.Option("smollm2-135m", "--model", "-m", help="base model (builtin, dir, hub id, .gguf)"),
         adapter: str = typer.Option(None, "--adapter", "-a", help="a run folder, adaptlab artifact or peft adapter"),
         system: str = typer.Option(None, help="system prompt"),
         temperature: float = typer.Option(0.7), top_p: float = typer.Option(0.9),
         max_tokens: int = typer.Option(256), dtype: str = typer.Option("auto")) -> None:
    """Interactive chat with the model's chat template (the one used in training); replies stream."""
    from adaptlab.methods.artifact import load_adapted
    from adaptlab.models.decode import SamplingParams
    from adaptlab.serve.chat import ChatSession

    with user_errors():
        loaded, tokenizer = load_adapted(model, adapter, dtype=dtype)
    session = ChatSession(loaded, tokenizer, SamplingParams(max_tokens, temperature, top_p), system)
    commands = {"/reset": lambda _: session.reset(), "/system": session.set_system}
    console.print(f"[dim]{HELP}[/dim]")
    while True:
        try:
            line = console.input("[bold]you>[/bold] ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        word, _, rest = line.partition(" ")
        if word == "/exit":
            break
        if word in commands:
            commands[word](rest.strip())
            console.print(f"[dim]{word[1:]}: done[/dim]")
            continue
        if line:
            console.print("[bold]model>[/bold] ", end="")
            for piece in session.reply(line):
                console.print(piece, end="", markup=False, highlight=False)
            console.print()


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
