"""`adaptlab prompt`: run a task zero-/few-shot with a prompt spec; `adaptlab prompt ablate`: each component's effect."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from adaptlab.commands.errors import fail, user_errors
from adaptlab.prompting.spec import SELECTIONS, PromptSpec, load_spec

# library modules that import torch load inside the commands, so `adaptlab --help` stays fast
MODE_NAMES = ("constrained", "generate")   # adaptlab.prompting.run.MODES
TASKS_HINT = "a classify task of `adaptlab eval` (e.g. sentiment), a builtin classification data set " \
             "(e.g. financial-phrasebank), a generative task (gsm8k, squad) or a .jsonl/.json/.csv file of " \
             "{text, label} rows (classification) or {instruction, input?, output} rows (generative)"

console = Console()
HELP = (
    "Run a task zero-shot or few-shot with a prompt spec; print predictions and the task's metric.\n\n"
    "The spec (YAML, see examples/prompt-*.yaml) has five optional components: role (system message), "
    "instruction + output_format, steps, delimiters, structure (named sections); plus `shots` exemplars chosen "
    "`fixed`, `random` (seeded, label-balanced) or by `similarity` (all-MiniLM-L6-v2 nearest neighbours).\n\n"
    "Modes (classification): `constrained` scores each label's log-likelihood (always a valid label); "
    "`generate` decodes greedily and parses the label from the text. Generative tasks always generate and "
    f"are scored by their own metric (gsm8k: the number after 'The answer is'). Tasks: {TASKS_HINT}.\n\n"
    "Example: adaptlab prompt --task sentiment --shots 3 --spec examples/prompt-sentiment.yaml --limit 50\n\n"
    "Example: adaptlab prompt --task gsm8k --spec examples/prompt-gsm8k.yaml --limit 5\n\n"
    "Ablation (the exemplars are switched too when the full prompt has shots): "
    "adaptlab prompt ablate --task sentiment --shots 3 --limit 50")

app = typer.Typer(help=HELP, no_args_is_help=True)

TASK = typer.Option(None, "--task", "-t", help=TASKS_HINT)
SHOTS = typer.Option(None, "--shots", "-k", min=0, help="number of exemplars (default: the spec's `shots`)")
SPEC = typer.Option(None, "--spec", help="prompt spec YAML (default: the task's builtin spec, all components on)")
MODE = typer.Option(None, "--mode", help=f"how the label is read: {' | '.join(MODE_NAMES)} "
                    "(default: constrained for classification, generate for generative tasks)")
SELECTION = typer.Option(None, "--selection", help=f"exemplar choice: {' | '.join(SELECTIONS)} (default: the spec's)")
LIMIT = typer.Option(50, "--limit", "-n", min=1, help="score the first N items of the task")
MODEL = typer.Option("smollm2-135m", "--model", "-m", help="builtin name, hub id, local directory or .gguf")
JSON_OUT = typer.Option(None, "--json", help="also write the full result (every prediction) as JSON here")
SHOW = typer.Option(5, "--show", help="how many predictions to print")
SHOW_PROMPT = typer.Option(False, "--show-prompt", help="print the first rendered prompt")
PLOT = typer.Option(None, "--plot", help="PNG path (default: prompt-ablation-<task>.png)")


def _setup(task: str | None, spec_path: Path | None, shots: int | None, selection: str | None, mode: str):
    """Resolve the task and the spec with the CLI's overrides; bad input exits with a clear message."""
    from adaptlab.prompting.run import MODES
    from adaptlab.prompting.tasks import load_task, prompt_task_names

    if task is None:
        fail(f"--task is required: {', '.join(prompt_task_names())}, or a file of {{text, label}} rows")
    if mode is not None and mode not in MODES:
        fail(f"--mode {mode!r} is not one of: {', '.join(MODES)}")
    if selection is not None and selection not in SELECTIONS:
        fail(f"--selection {selection!r} is not one of: {', '.join(SELECTIONS)}")
    with user_errors():
        the_task = load_task(task)
        spec: PromptSpec = load_spec(spec_path) if spec_path else the_task.spec
    overrides = {k: v for k, v in {"shots": shots, "selection": selection}.items() if v is not None}
    return the_task, spec.model_copy(update=overrides)


def _load(model: str):
    from adaptlab.models import load_model

    with user_errors():
        return load_model(model)


def _write_json(path: Path | None, data: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        console.print(f"wrote {path}")


@app.callback(invoke_without_command=True)
def prompt(ctx: typer.Context, task: str = TASK, shots: int = SHOTS, spec: Path = SPEC, mode: str = MODE,
           selection: str = SELECTION, limit: int = LIMIT, model: str = MODEL,
           show: int = SHOW, show_prompt: bool = SHOW_PROMPT, json_out: Path = JSON_OUT) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from adaptlab.prompting.run import build_prompts, run_prompt

    the_task, the_spec = _setup(task, spec, shots, selection, mode)
    loaded = _load(model)
    with user_errors():
        if show_prompt:
            console.rule("first prompt")
            console.print(build_prompts(loaded.tokenizer, the_task, the_spec, the_task.items[:1])[0], markup=False)
        result = run_prompt(loaded.model, loaded.tokenizer, the_task, the_spec, mode=mode, limit=limit)

    preds = Table(title=f"{the_task.name}: first {min(show, result.n)} predictions")
    for col in ("text", "gold", "predicted", "model output"):
        preds.add_column(col, overflow="fold")
    for p in result.predictions[:show]:
        ok = "green" if p.pred == p.gold else "red"
        preds.add_row(p.text[:120], p.gold, f"[{ok}]{p.pred}[/{ok}]", p.output[:80])
    console.print(preds)

    summary = Table(title="prompting result", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("")
    for key, value in [("task", result.task), ("model", model), ("mode", result.mode), ("shots", str(result.shots)),
                       ("selection", result.selection if result.shots else "-"),
                       ("components", ", ".join(result.components) or "none"), ("items", str(result.n)),
                       (result.metric, f"{result.score:.3f}"), ("valid answers", f"{result.valid:.3f}"),
                       ("majority class", "-" if result.majority is None else f"{result.majority:.3f}")]:
        summary.add_row(key, value)
    console.print(summary)
    _write_json(json_out, {"model": model, **result.to_dict()})


@app.command("ablate")
def ablate_cmd(task: str = TASK, shots: int = SHOTS, spec: Path = SPEC, mode: str = MODE,
               selection: str = SELECTION, limit: int = LIMIT, model: str = MODEL, plot: Path = PLOT,
               json_out: Path = JSON_OUT) -> None:
    """Switch each prompt component (and the exemplars, when the prompt has shots) on and off; report each one's effect on the task metric as a table and a PNG.

    Leave-one-out: the full prompt's score minus that without the component. Add-one-in: the bare prompt (every component off, zero-shot) with only that component, minus the bare prompt."""
    from adaptlab.prompting.ablate import ablate, plot_ablation

    the_task, the_spec = _setup(task, spec, shots, selection, mode)
    loaded = _load(model)
    with user_errors():
        result = ablate(loaded.model, loaded.tokenizer, the_task, the_spec, mode=mode, limit=limit)
    table = Table(title=f"{result.task}: prompt ablation ({result.mode}, {result.shots}-shot, n={result.n}; "
                        f"full {result.full:.3f}, bare {result.bare:.3f})")
    for col in ("component", "without it", "full - without", "only it", "only - bare"):
        table.add_column(col, justify="left" if col == "component" else "right")
    for e in result.effects:
        table.add_row(e.component, f"{e.without:.3f}", f"{e.effect_off:+.3f} ± {e.se_off:.3f}", f"{e.only:.3f}",
                      f"{e.effect_on:+.3f} ± {e.se_on:.3f}")
    console.print(table)
    console.print("± is the paired standard error over the items; effects within about 2 SE of 0 are noise.")
    path = plot_ablation(result, plot or Path(f"prompt-ablation-{Path(result.task).stem}.png"))
    console.print(f"plot: {path}")
    _write_json(json_out, {"model": model, **result.to_dict()})


def register(root: typer.Typer) -> None:
    """Mount `adaptlab prompt` and `adaptlab prompt ablate`."""
    root.add_typer(app, name="prompt")
