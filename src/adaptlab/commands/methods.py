"""`adaptlab methods` (what each adaptation method is) and `adaptlab merge` (fold an adapter, check drift, save)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from adaptlab.commands.errors import REFUSED, fail, user_errors

console = Console()


def methods() -> None:
    """List every adaptation method with a one-line description and its paper."""
    from adaptlab.methods import METHODS

    table = Table("name", "description", "paper", title="adaptation methods")
    for m in sorted(METHODS.values(), key=lambda m: m.name):
        table.add_row(m.name, m.description, m.paper)
    console.print(table)


def merge(path: Path = typer.Argument(..., help="a run's final artifact folder (with adaptlab.json) or a run folder"),
          out: Path = typer.Option(..., "--out", "-o", help="folder for the merged model"),
          threshold: float = typer.Option(None, help="largest max |logit drift| accepted (default 0.05)"),
          force: bool = typer.Option(False, "--force", help="save even when the drift is above the threshold"),
          dtype: str = typer.Option("fp32", help="dtype to merge and compare in (fp32 measures the merge itself)"),
          device: str = typer.Option("auto")) -> None:
    """Merge an adapter into its base, report the logit drift on sample prompts, save the merged model."""
    from adaptlab.methods.artifact import resolve_artifact
    from adaptlab.methods.fidelity import DEFAULT_THRESHOLD, DriftTooLarge, merge_artifact

    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    try:
        with user_errors():
            report = merge_artifact(resolve_artifact(path), out, threshold, force, dtype=dtype, device=device)
    except DriftTooLarge as e:
        _drift_table(e.drift, e.threshold, "refused")
        fail(str(e), REFUSED)
    _drift_table(report.drift, threshold, "saved (forced)" if report.drift.max_abs > threshold else "saved")
    kind = "low-bit export (adaptlab.quant.export)" if report.low_bit else "transformers folder"
    console.print(f"merged {report.method} -> {report.out} ({kind})")


def _drift_table(drift, threshold: float, status: str) -> None:
    table = Table("max |drift|", "mean |drift|", "tokens", "threshold", "status", title="merged vs unmerged logits")
    table.add_row(f"{drift.max_abs:.3g}", f"{drift.mean_abs:.3g}", str(drift.tokens), f"{threshold:g}", status)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("methods")(methods)
    app.command("merge")(merge)
