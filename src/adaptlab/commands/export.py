"""`adaptlab export`: a run as a merged transformers folder, a peft adapter or a GGUF file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from adaptlab.commands.errors import REFUSED, fail, user_errors

console = Console()


def export(run: Path = typer.Argument(..., help="a run folder or its final artifact (with adaptlab.json)"),
           to: str = typer.Option(..., "--to", help="merged | peft | gguf"),
           out: Path = typer.Option(..., "--out", "-o", help="folder (or .gguf file) to write"),
           quant: str = typer.Option(None, "--quant", help="gguf only: f16 (default) | q8_0")) -> None:
    """Export for other servers: merged (any transformers server), peft (vLLM --lora-modules, TGI),
    gguf (llama.cpp, Ollama; read back with transformers and its logits compared with the source)."""
    from adaptlab.methods.export import export as run_export
    from adaptlab.methods.fidelity import DriftTooLarge

    try:
        with user_errors(FileExistsError):
            report = run_export(run, to, out, quant)
    except DriftTooLarge as e:
        fail(str(e), REFUSED)
    if report.drift is not None:
        table = Table("max |drift|", "mean |drift|", "tokens", title="exported vs trained logits")
        table.add_row(f"{report.drift.max_abs:.3g}", f"{report.drift.mean_abs:.3g}", str(report.drift.tokens))
        console.print(table)
    for note in report.notes:
        console.print(f"note: {note}")
    console.print(f"exported {report.target} -> {report.out}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
