"""`adaptlab eval`: score a model (optionally with an adapter) on tasks or a suite; table + JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from adaptlab.commands.errors import fail, user_errors

console = Console()


class _Bars:
    """Rich progress: one bar per task with items/s."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def __call__(self, task: str, total: int):
        bar = self.progress.add_task(task, total=total)
        return lambda n: self.progress.advance(bar, n)


def _items_per_s(progress_task) -> str:
    speed = progress_task.finished_speed or progress_task.speed
    return f"{speed:.2f} items/s" if speed else ""


class _Speed(TextColumn):
    def render(self, task):
        from rich.text import Text
        return Text(_items_per_s(task), style="cyan")


def eval_cmd(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="builtin name, hub id, local dir or .gguf"),
    adapter: Path = typer.Option(None, help="an adaptlab artifact or run folder, or a plain peft adapter folder"),
    tasks: str = typer.Option(None, help="comma-separated task names or custom task .yaml files"),
    suite: str = typer.Option(None, help="a named suite (table1) with published scores beside ours"),
    limit: int = typer.Option(None, help="items per task (stratified over subjects/subtasks)"),
    shots: int = typer.Option(None, help="exemplars (default: each task's standard number)"),
    chat_template: bool = typer.Option(False, help="wrap prompts in the tokenizer's chat template"),
    extraction: str = typer.Option("flexible", help="answer extraction for generated answers: strict | flexible"),
    average: str = typer.Option(None, help="micro | macro (default: each task's standard)"),
    seed: int = typer.Option(0, help="seed for the limited subset and for sampling"),
    samples: int = typer.Option(None, help="completions per item; code tasks report pass@k for k = 1, 10, 100 "
                                "up to this number (needs --temperature > 0)"),
    temperature: float = typer.Option(None, help="sampling temperature (default 0: greedy)"),
    batch_size: int = typer.Option(None, help="batch size (default: 16 for scoring, 8 for generation)"),
    dtype: str = typer.Option("auto", help="auto (bf16 where supported) | bf16 | fp16 | fp32"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    output: Path = typer.Option(None, "--output", "-o", help="write results as JSON here"),
    log_samples: bool = typer.Option(False, help="include every sample (prompt, output, score) in the JSON"),
    allow_unsandboxed: bool = typer.Option(False, "--allow-unsandboxed", help="run code tasks even where no OS "
                                           "sandbox (bubblewrap) starts: model-written code then runs as you"),
) -> None:
    """Evaluate a model on tasks (mmlu, gsm8k, humaneval, bbh, nq_open, triviaqa, sentiment or a custom YAML)."""
    from adaptlab.eval import sandbox
    from adaptlab.eval.catalog import TASKS, get_task
    from adaptlab.eval.runner import evaluate
    from adaptlab.eval.suite import get_suite
    from adaptlab.eval.tasks import Protocol
    from adaptlab.methods.artifact import load_adapted

    if extraction not in ("strict", "flexible"):
        fail(f"--extraction {extraction!r}: choose strict or flexible")
    if average not in (None, "micro", "macro"):
        fail(f"--average {average!r}: choose micro or macro")
    with user_errors():
        the_suite = get_suite(suite) if suite else None
        names = list(the_suite.tasks) if the_suite else [t.strip() for t in (tasks or "").split(",") if t.strip()]
        if not names:
            fail(f"give --tasks (one or more of: {', '.join(sorted(TASKS))}) or --suite")
        for name in names:
            get_task(name)
        Protocol(shots=0, samples=samples or 1, temperature=temperature or 0.0)   # bad sampling options fail here
    if allow_unsandboxed:
        os.environ[sandbox.ALLOW_ENV] = "1"   # also reaches the processes that compare starts
    elif any(get_task(n).kind == "code" for n in names) and (why := sandbox.sandbox_status()):
        fail(f"code tasks run model-written programs only in an OS sandbox, and {why}. "
             "Fix that, or pass --allow-unsandboxed to run them as your own user.")
    with user_errors():
        model_obj, tokenizer = load_adapted(model, adapter, dtype, device)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Speed(""), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        results = evaluate(model_obj, tokenizer, names, shots=shots, log_samples=log_samples,
                           progress=_Bars(progress), batch_size=batch_size, limit=limit, seed=seed,
                           chat_template=chat_template, extraction=extraction, average=average,
                           samples=samples, temperature=temperature)
    _render(results, the_suite, model, adapter)
    if output:
        payload = {"model": model, "adapter": str(adapter) if adapter else None, "suite": suite,
                   "results": {k: (v.to_dict() if not isinstance(v, Exception) else {"error": str(v)})
                               for k, v in results.items()}}
        if the_suite:
            payload["published"] = the_suite.published
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2, default=str))
        console.print(f"wrote {output}")


def _protocol(p) -> str:
    return (f"{p.shots}-shot, chat {'on' if p.chat_template else 'off'}, {p.extraction}, {p.average}, "
            f"limit {p.limit if p.limit else 'all'}, seed {p.seed}"
            + (f", {p.samples} samples at T={p.temperature}" if p.samples > 1 else ""))


def _render(results, the_suite, model: str, adapter) -> None:
    """Scores (beside the published ones for a suite), then each task's protocol on its own line:
    a score means little without the shots, template, extraction and averaging it was measured under."""
    refs = list(the_suite.published) if the_suite else []
    title = f"{model}" + (f" + {adapter}" if adapter else "")
    table = Table("task", "metric", "score", "macro", "n", "items/s", *refs, title=title)
    for name, r in results.items():
        published = [str(the_suite.published[ref].get(name, "")) for ref in refs] if the_suite else []
        if isinstance(r, Exception):
            table.add_row(name, "", "[red]n/a[/red]", "", "", "", *published)
            continue
        macro = r.metrics.get(f"{r.metric}_macro")
        table.add_row(name, r.metric, f"{r.score:.1f}", f"{macro:.1f}" if macro is not None else "", str(r.n),
                      f"{r.items_per_s:.2f}", *published)
    console.print(table)
    for name, r in results.items():
        if isinstance(r, Exception):
            console.print(f"[yellow]{name}:[/yellow] {r}")
        else:
            console.print(f"[dim]{name}:[/dim] {_protocol(r.protocol)}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
