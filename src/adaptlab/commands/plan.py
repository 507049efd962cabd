"""`adaptlab plan`: will it fit? Peak memory and time per step of every method, from the model's config alone."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from adaptlab.commands.errors import user_errors

console = Console()


def _gb(mb: float) -> str:
    return f"{mb / 1024:,.1f}"


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:,.2f} s"
    return f"{s / 60:,.1f} min" if s < 7200 else f"{s / 3600:,.1f} h"


def plan(model: str = typer.Option("smollm2-135m", "--model", "-m", help="shipped config name, builtin model, "
                                   "config.json, model directory or hub id (only config.json is read)"),
         method: str = typer.Option("all", "--method", help="a method name, a comma list, or all"),
         seq: int = typer.Option(2048, "--seq", min=1, help="sequence length (seq_len)"),
         batch: int = typer.Option(4, "--batch", min=1, help="sequences per micro-batch (batch_size)"),
         dtype: str = typer.Option("auto", help="compute dtype: auto | bf16 | fp16 | fp32"),
         checkpointing: bool = typer.Option(False, "--checkpointing/--no-checkpointing",
                                            help="activation_checkpointing"),
         optimizer: str = typer.Option("auto", help="auto (the method's own) | adamw | adamw8bit | paged_adamw8bit"),
         r: int = typer.Option(8, help="adapter rank"),
         device: str = typer.Option("auto", help="auto | cpu | cuda"),
         memory_gb: float = typer.Option(None, "--memory-gb", help="plan for this much device memory instead of "
                                         "the detected one"),
         gflops: float = typer.Option(None, "--gflops", help="matmul peak to plan with instead of measuring it")) -> None:
    """Estimate peak memory and time per step of each method, and say which fit this device."""
    from adaptlab.memplan.device import detect
    from adaptlab.memplan.device import plan as make_plan
    from adaptlab.memplan.estimate import EFFICIENCY, Settings
    from adaptlab.memplan.shapes import load_shape
    from adaptlab.methods import MethodConfig

    with user_errors():
        shape = load_shape(model)
        dev, compute = detect(dtype, gflops, memory_gb, device)
        settings = Settings(seq_len=seq, batch_size=batch, dtype=compute, activation_checkpointing=checkpointing,
                            optimizer=optimizer, method=MethodConfig(r=r))
        rows = make_plan(shape, None if method == "all" else [m.strip() for m in method.split(",")], settings, dev)
    console.print(f"[bold]{shape.name}[/bold]: {shape.total_params / 1e9:.3g} B parameters ({shape.layers} layers, "
                  f"hidden {shape.hidden}, vocab {shape.vocab}{', tied' if shape.tied else ''}); seq {seq} x batch "
                  f"{batch}, {compute}{', activation checkpointing' if checkpointing else ''}")
    console.print(f"device: {dev.type} {dev.name}, {_gb(dev.memory_mb)} GB; matmul peak {dev.gflops:,.0f} GFLOP/s x "
                  f"efficiency {EFFICIENCY[dev.type]}")
    table = Table("method", "trainable", "optimizer", "weights", "grad+optim", "activations", "loss", "peak",
                  "time/step", "fits", title="estimated from config.json (GiB)")
    for row in rows:
        e, p = row.estimate, row.estimate.parts_mb
        share = 100 * e.trainable_params / e.total_params
        table.add_row(e.method, f"{e.trainable_params / 1e6:,.3g} M ({share:.2g}%)" if share < 100 else
                      f"{e.trainable_params / 1e6:,.0f} M (all)", e.optimizer, _gb(p["weights"]),
                      _gb(p["gradients"] + p["optimizer"]), _gb(p["activations"]), _gb(p["loss"]),
                      f"[bold]{_gb(e.peak_mb)}[/bold]", _seconds(row.step_s),
                      "[green]yes[/green]" if row.fits else "[red]no[/red]")
    console.print(table)
    console.print("peak: the larger of a training step and loading (on CPU loading counts the memory-mapped "
                  "checkpoint, as the trainer's resident-set peak does; fits leaves out those droppable pages)")
    fitting = [row.estimate.method for row in rows if row.fits]
    hint = "a smaller --batch or --seq" + ("" if checkpointing else ", --checkpointing")
    console.print("fits: " + (", ".join(fitting) if fitting else f"none; try {hint}, or a device with more memory"))


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
