"""Core commands: `models`, `data list|show`, `train`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from adaptlab.commands.errors import fail

console = Console()
data_app = typer.Typer(help="Builtin data sets: list them with their licenses, preview one.", no_args_is_help=True)


def models() -> None:
    """List the builtin models (they work without a network)."""
    from adaptlab.models import BUILTIN_MODELS

    table = Table("name", "license", "description", title="builtin models")
    for m in BUILTIN_MODELS.values():
        table.add_row(m.name, m.license, m.description)
    console.print(table)
    console.print("Any hub id (org/name), local transformers directory or .gguf file works too.")


@data_app.command("list")
def data_list() -> None:
    """Every builtin data set with its kind, size, source and license."""
    from adaptlab.data import BUILTIN_DATASETS

    table = Table("name", "kind", "license", "source", "description", title="builtin data sets")
    for d in BUILTIN_DATASETS.values():
        table.add_row(d.name, d.kind, d.license, d.source, d.description)
    console.print(table)


@data_app.command("show")
def data_show(name: str = typer.Argument(..., help="builtin name or a local data file"),
              rows: int = typer.Option(3, help="rows to preview"),
              model: str = typer.Option("smollm2-135m", help="tokenizer used for length statistics"),
              kind: str = typer.Option(None, help="record kind (default: detected)")) -> None:
    """Preview rows of a data set and its token-length statistics under the model's chat template."""
    from adaptlab.data import load_records
    from adaptlab.data.stats import token_stats
    from adaptlab.models import load_tokenizer

    try:
        records = load_records(name, kind=kind)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    for r in records[:rows]:
        console.print(r)
    stats = token_stats(records, load_tokenizer(model))
    if stats is None:
        console.print(f"{len(records)} records ({type(records[0]).__name__}); token statistics apply to SFT records")
        return
    table = Table("records", "measured", "min", "median", "mean", "p95", "max", title=f"{name}: tokens per example")
    table.add_row(str(stats.records), str(stats.measured), str(stats.min), str(stats.median), f"{stats.mean:.0f}",
                  str(stats.p95), str(stats.max))
    console.print(table)


def train(recipe: Path = typer.Argument(None, help="YAML recipe (see examples/); omitted: defaults"),
          overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. optim.lr=1e-4 max_steps=20"),
          method: str = typer.Option(None, "--method", help="shortcut for method.name=..."),
          resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in output_dir"),
          overwrite: bool = typer.Option(False, "--overwrite", help="delete the run already in output_dir first")) -> None:
    """Fine-tune a model from a recipe; any key can be overridden as key=value.

    Example: adaptlab train examples/sft-lora.yaml max_steps=50 optim.lr=1e-4
    """
    from adaptlab.config import ConfigError, load_config
    from adaptlab.train import train as run_training

    extra = list(overrides or []) + ([f"method.name={method}"] if method else [])
    try:
        cfg = load_config(recipe, extra)
    except ConfigError as e:
        fail(str(e))
    console.print(f"training [bold]{cfg.model}[/bold] with [bold]{cfg.method.name}[/bold] on {cfg.data.train} "
                  f"for {cfg.max_steps} steps -> {cfg.output_dir}")
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=cfg.max_steps, info="")

        def on_step(m) -> None:
            info = f"loss {m.loss:.4f}  {m.tokens_per_s:,.0f} tok/s"
            if m.eval_loss is not None:
                progress.console.print(f"step {m.step}: eval loss {m.eval_loss:.4f}")
            progress.update(task, completed=m.step, info=info)

        try:
            result = run_training(cfg, resume=resume, on_step=on_step, overwrite=overwrite)
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))
    table = Table("steps", "train loss (last)", "eval loss (first -> last)", "tokens/s", "peak MB",
                  "trainable", title="run finished")
    evals = result.eval_losses
    eval_text = f"{evals[0][1]:.4f} -> {evals[-1][1]:.4f}" if evals else "-"
    table.add_row(str(result.steps), f"{result.train_losses[-1]:.4f}" if result.train_losses else "-", eval_text,
                  f"{result.tokens_per_s:,.0f}", f"{result.peak_mb:,.0f}",
                  f"{result.trainable_params:,} ({result.trainable_params / max(result.total_params, 1):.2%})")
    console.print(table)
    console.print(f"artifact: {result.final_dir}   metrics: {result.output_dir / 'metrics.jsonl'}")


def register(app: typer.Typer) -> None:
    app.command()(models)
    app.command()(train)
    app.add_typer(data_app, name="data")
