"""`adaptlab feedback serve | export | stats | judge`: parse options, call adaptlab.feedback, render with rich."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console()
err = Console(stderr=True)
feedback_app = typer.Typer(help="Human preferences from a web page, an AI judge (RLAIF), and their export as "
                                "preference JSONL for the reward and dpo objectives.", no_args_is_help=True)
DB = typer.Option(Path("feedback.db"), "--db", help="the SQLite store of pairs and votes")


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Known failures become one red line and exit code 1 instead of a traceback."""
    try:
        yield
    except (FileNotFoundError, ValueError, KeyError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(1) from None


@feedback_app.command("serve")
def serve_cmd(prompts: Path = typer.Option(..., "--prompts", help="prompts: JSONL with a 'prompt' field, or one per line"),
              policy: str = typer.Option(..., "--policy", help="MODEL or MODEL:ADAPTER_DIR answering the prompts"),
              policy2: str = typer.Option(None, "--policy2", help="a second policy; omitted: --policy is sampled twice"),
              db: Path = DB,
              host: str = typer.Option("127.0.0.1", help="bind address; anything but loopback needs --api-key"),
              port: int = typer.Option(8700, help="port"),
              api_key: str = typer.Option(None, "--api-key", envvar="ADAPTLAB_FEEDBACK_KEY",
                                          help="key the page asks for (needed to bind beyond loopback)"),
              max_new_tokens: int = typer.Option(128, help="answer length in tokens"),
              temperature: float = typer.Option(0.8, help="sampling temperature of the answers"),
              seed: int = typer.Option(0, help="seed of the side randomisation")) -> None:
    """Serve the voting page: a prompt, two answers (sides randomised), A / B / tie / both bad, optional 1-7
    ratings and a comment. Keys 1-4 pick, Enter submits. Answers are generated ahead in the background."""
    from adaptlab.feedback.app import serve

    policies = [policy] + ([policy2] if policy2 else [])
    console.print(f"feedback page on http://{host}:{port}/  (votes in {db}; Ctrl-C stops)")
    with _clear_errors():
        serve(str(prompts), policies, str(db), host=host, port=port, api_key=api_key, max_new_tokens=max_new_tokens,
              temperature=temperature, seed=seed)


@feedback_app.command("export")
def export_cmd(out: Path = typer.Option(..., "--out", help="preference JSONL to write (prompt, chosen, rejected, ...)"),
               db: Path = DB) -> None:
    """Write the decided votes (A or B) as preference rows the reward and dpo objectives read."""
    from adaptlab.feedback.store import FeedbackStore, export_preferences

    with _clear_errors():
        if not db.exists():
            raise FileNotFoundError(f"no feedback store at {db}; start `adaptlab feedback serve` first")
        n = export_preferences(FeedbackStore(db), out)
    console.print(f"{n} preference rows -> {out}")


@feedback_app.command("stats")
def stats_cmd(db: Path = DB) -> None:
    """Votes per annotator, the tie rate, and agreement between annotators on the pairs they share."""
    from adaptlab.feedback.store import CHOICES, FeedbackStore

    with _clear_errors():
        if not db.exists():
            raise FileNotFoundError(f"no feedback store at {db}")
        stats = FeedbackStore(db).stats()
    table = Table("annotator", *CHOICES, "votes", title=f"votes in {db}")
    for name, counts in sorted(stats.votes.items()):
        table.add_row(name, *(str(counts[c]) for c in CHOICES), str(sum(counts.values())))
    console.print(table)
    agreement = f"{stats.agreement:.1%}" if stats.agreement is not None else "- (no pair has two annotators)"
    kappa = "-" if stats.kappa is None else f"{stats.kappa:.3f}"
    console.print(f"tie or both-bad rate {stats.tie_rate:.1%}; inter-annotator agreement {agreement}, Cohen's kappa "
                  f"{kappa}, over {stats.overlapping_pairs} shared pairs")


@feedback_app.command("judge")
def judge_cmd(pairs: str = typer.Option(..., "--pairs", help="JSONL pairs ({prompt, chosen, rejected} or {prompt, a, b}) "
                                        "or a builtin preference set, e.g. hh-rlhf-harmless"),
              limit: int = typer.Option(None, "--limit", help="judge only the first N pairs"),
              judge: str = typer.Option("smollm2-135m", "--judge", help="adaptlab model, or an OpenAI-compatible URL "
                                        "(key from ADAPTLAB_JUDGE_KEY / OPENAI_API_KEY)"),
              criteria: str = typer.Option("helpful", "--criteria", help="helpful | harmless | a text file"),
              out: Path = typer.Option(Path("judged.jsonl"), "--out", help="the judge's preference JSONL"),
              model: str = typer.Option(None, "--model", help="model name sent to the endpoint (or ADAPTLAB_JUDGE_MODEL)"),
              batch: int = typer.Option(8, help="pairs per judge call"),
              order_rule: str = typer.Option("fastchat", "--order-rule", help="fastchat: a disagreement between the "
                                             "two orders is a tie; average: P(A) averaged over both orders (RLAIF)"),
              scoring: str = typer.Option("letters", "--scoring", help="letters: the verdict letter's likelihood; "
                                          "contrastive: log p(answer | criterion, prompt) - log p(answer | prompt)")) -> None:
    """Judge each pair in both orders (combined by --order-rule), write the decided ones as preference rows,
    and report the position-flip rate and the agreement (percent, Cohen's kappa) with human votes where the
    pairs carry them."""
    from adaptlab.feedback.backends import JudgeUnavailable, make_backend
    from adaptlab.feedback.judge import ORDER_RULES, criteria_text, judge_pairs, load_pairs, preferences, report
    from adaptlab.feedback.store import write_jsonl
    from adaptlab.registry import lookup

    state = out.with_name(out.name + ".verdicts")
    with _clear_errors():
        items, text = load_pairs(pairs, limit), criteria_text(criteria)
        lookup(ORDER_RULES, order_rule, "order rule")
        backend = make_backend(judge, model, scoring=scoring, criteria=criteria)
    with Progress(TextColumn("judging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task("judge", total=len(items))
        try:
            records = judge_pairs(items, backend, text, state, batch=batch, progress=lambda n: bar.advance(task, n),
                                  order_rule=order_rule)
        except JudgeUnavailable as e:
            err.print(f"[red]error:[/red] {escape(str(e))}\nverdicts so far are saved in {state}; "
                      "run the same command again to resume")
            raise typer.Exit(1) from None
    _render_report(report(records))
    rows = preferences(records, criteria)
    if rows:
        write_jsonl(rows, out)
    console.print(f"{len(rows)} preference rows -> {out}" if rows else "the judge decided no pair: nothing written")


@feedback_app.command("compare")
def compare_cmd(recipe: Path = typer.Argument(..., help="comparison recipe, e.g. examples/rlhf-vs-rlaif.yaml"),
                overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. split.eval_prompts=32"),
                budget: str = typer.Option(None, "--budget", "-b", help="a named budget of the recipe (quick)")) -> None:
    """SFT, RLHF (reward model + RLOO), DPO and RLAIF (AI-judge labels) from one recipe: each policy's win rate
    over SFT and harmless rate by a held-out judge, beside the RLAIF paper's Figure 3 (report.md + PNG).
    Finished stages are reused, so a rerun continues where the last one stopped."""
    from adaptlab.feedback.comparison import run_comparison
    from adaptlab.feedback.comparison_report import LABELS, PAPER
    from adaptlab.feedback.recipe import load_comparison

    with _clear_errors():
        cfg = load_comparison(recipe, budget, overrides or [])
        results = run_comparison(cfg, event=lambda msg: err.print(f"[dim]{escape(msg)}[/dim]"))

    def pct(r: dict | None) -> str:
        return "reference" if r is None else f"{r['value']:.1f}% [{r['low']:.1f}, {r['high']:.1f}]"

    table = Table("policy", "win rate over SFT", "harmless rate", "paper: win (summ. / helpful)", "paper: harmless",
                  title=f"{results['eval_prompts']} held-out prompts; judge: {results['heldout_judge']}")
    for name, row in results["eval"]["policies"].items():
        paper = PAPER.get(name, {})
        wins = f"{paper['win_summarization']:.0f}% / {paper['win_helpful']:.0f}%" if "win_helpful" in paper else "-"
        table.add_row(LABELS[name], pct(row["win_rate"]), pct(row["harmless_rate"]), wins,
                      f"{paper['harmless']:.0f}%" if "harmless" in paper else "-")
    console.print(table)
    seconds = results["seconds"]
    total = {k: sum(v[k] for v in seconds.values()) for k in ("wall", "cpu")}
    phases = Table("phase", "wall s", "CPU s", title="time per phase (a stage reused from an earlier run: ~0)")
    for name, spent in [*seconds.items(), ("total", total)]:
        phases.add_row(name, f"{spent['wall']:.0f}", f"{spent['cpu']:.0f}")
    console.print(phases)
    console.print(f"report: {Path(cfg.output_dir) / 'report.md'} (chart rlhf_vs_rlaif.png, results.json)")


def _render_report(r) -> None:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    table = Table("pairs", "decided", "ties", "invalid replies", "position flips", "human pairs",
                  "agreement (w/o tie)", "agreement (w/ tie)", "kappa", title=f"judge report ({r.order_rule} rule)")
    table.add_row(str(r.pairs), str(r.decided), str(r.ties), str(r.invalid), pct(r.flip_rate), str(r.human_pairs),
                  pct(r.agreement), pct(r.agreement_with_ties), "-" if r.kappa is None else f"{r.kappa:.3f}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback")

