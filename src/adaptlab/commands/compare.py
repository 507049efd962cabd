"""`adaptlab compare`: run every route of a recipe in a time budget and write the report."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from adaptlab.commands.errors import fail, user_errors

console = Console()


class LiveView:
    """The running cell's bar with its ETA, the budget bar, and a table of finished cells that grows."""

    def __init__(self, budget_s: float):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.budget = self.progress.add_task("budget (s)", total=int(budget_s))
        self.start = time.perf_counter()
        self.bars: dict[str, int] = {}
        self.table = Table("cell", "status", "score [95% CI]", "peak MB", "train s", "wall s", title="finished cells")

    def renderable(self) -> Group:
        return Group(self.table, self.progress)

    def __call__(self, event: dict) -> None:
        cell, kind = event["cell"], event["event"]
        self.progress.update(self.budget, completed=min(time.perf_counter() - self.start,
                                                        self.progress.tasks[self.budget].total))
        if kind == "start":
            self.bars[cell] = self.progress.add_task(cell, total=None)
        elif kind in ("progress", "phase") and cell in self.bars:
            self.progress.update(self.bars[cell], description=f"{cell}: {event['phase']}",
                                 total=event.get("total"), completed=event.get("done", 0))
        elif kind == "done":
            if cell in self.bars:
                self.progress.remove_task(self.bars.pop(cell))
            self.table.add_row(*_row(cell, event["record"], event.get("cached", False)))
        if not console.is_terminal and kind in ("start", "done"):
            # a log file or a pipe gets no live view (rich draws it once, at the end): one line per cell instead
            elapsed = time.perf_counter() - self.start
            text = "started" if kind == "start" else _line(event["record"], event.get("cached", False))
            console.print(f"[{elapsed:6.0f} s] {cell}: {text}", markup=False, highlight=False)


def _row(cell: str, r: dict, cached: bool) -> list[str]:
    if r["status"] != "ok":
        return [cell, f"[red]{r['status']}[/red]", r.get("reason") or r.get("error", ""), "", "", ""]
    t = r["test"]
    return [cell, "cached" if cached else "ok", f"{t['score']:.1f} [{t['interval'][0]:.1f}, {t['interval'][1]:.1f}]",
            f"{r['peak_memory_mb']:,.0f}", f"{r.get('train_time_s', 0):.1f}", f"{r.get('wall_s', 0):.1f}"]


def _line(r: dict, cached: bool) -> str:
    """A finished cell in one plain line (for logs)."""
    if r["status"] != "ok":
        return f"{r['status']}: {r.get('reason') or r.get('error', '')}"
    t = r["test"]
    return (f"{'cached' if cached else 'ok'} score {t['score']:.1f} [{t['interval'][0]:.1f}, {t['interval'][1]:.1f}], "
            f"peak {r['peak_memory_mb']:,.0f} MB, trained {r.get('train_time_s', 0):.1f} s, wall {r.get('wall_s', 0):.1f} s")


def compare_cmd(
    args: list[str] = typer.Argument(None, help="RECIPE.yaml then key=value overrides (e.g. seeds=[0,1]); with "
                                     "--merge: the run folders to merge"),
    budget: str = typer.Option(None, "--budget", "-b", help="wall time for the whole matrix: 90s, 20m, 1h, or a "
                               "named budget of the recipe (quick = 5m); default: the recipe's"),
    only: str = typer.Option(None, help="rerun only these routes (comma-separated); the others come from the cache"),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="run folder (default: the recipe's output_dir)"),
    merge: bool = typer.Option(False, "--merge", help="no run: one report from the records of several run folders"),
) -> None:
    """Every route of the recipe (zero-/few-shot prompting and each fine-tuning method) on one task, in one time
    budget, each cell in its own process: scores with 95% intervals, parameters, peak memory, times, sizes,
    forgetting and over-fitting, as report.md, report.html and PNG plots. Finished cells are cached: rerun
    the same command to continue after Ctrl-C."""
    from adaptlab.compare.planner import parse_budget
    from adaptlab.compare.recipe import load_recipe
    from adaptlab.compare.runner import compare
    from adaptlab.compare.runner import merge as merge_runs

    if not args:
        fail("give a recipe (e.g. examples/compare-sentiment.yaml), or --merge with run folders")
    if merge:
        with user_errors(KeyError):
            paths = merge_runs([Path(a) for a in args], output_dir or Path(args[0]))
        console.print(f"report: {paths['report.md']}  {paths['report.html']}")
        return
    with user_errors():
        cfg = load_recipe(args[0], args[1:])
        if output_dir:
            cfg.output_dir = str(output_dir)
        budget_s = parse_budget(budget or cfg.budget, cfg.budgets)
    view = LiveView(budget_s)
    try:
        with user_errors(RuntimeError), Live(view.renderable(), console=console, refresh_per_second=4):
            paths = compare(cfg, budget_s, [r.strip() for r in only.split(",")] if only else None, view)
    except KeyboardInterrupt:
        fail(f"interrupted; finished cells are kept in {cfg.output_dir}: run the same command to continue")
    console.print(f"report: {paths['report.md']}  {paths['report.html']}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
