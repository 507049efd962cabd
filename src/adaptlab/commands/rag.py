"""`adaptlab rag index | ask | eval`: parse options, call adaptlab.rag, render with rich."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from adaptlab.commands.errors import err, user_errors
from adaptlab.rag.embed import DEFAULT_EMBEDDER

console = Console()
rag_app = typer.Typer(help="Retrieval-augmented generation over your documents (embedded store or PostgreSQL+pgvector).",
                      no_args_is_help=True)

STORE_HELP = ("a file path (embedded store: SQLite + HNSW file beside it) or postgresql://user@host/db with the "
              "password in PGPASSWORD or ~/.pgpass (a password in the URL shows in `ps` and shell history)")
DEFAULT_MODEL = "smollm2-135m"


def _clear_errors():
    """Known failures (bad input, an unreachable or empty store) become one red line, never a traceback."""
    from adaptlab.rag.store import StoreError

    return user_errors(StoreError)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=True)


def _warn_skipped(skipped) -> None:
    if skipped:
        lines = "\n".join(f"  {escape(s.path)}: {escape(s.reason)}" for s in skipped)
        err.print(f"[yellow]skipped {len(skipped)} file(s):[/yellow]\n{lines}")


FOLDER = typer.Argument(None, help="folder (or file) of .txt .md .html .pdf documents (or `docs:` in --config)")
CONFIG = typer.Option(None, "--config", help="RAG recipe YAML (see examples/rag.yaml); options override it")


@rag_app.command("index")
def index_cmd(folder: Path = FOLDER,
              config: Path = CONFIG,
              store: str = typer.Option(None, "--store", help=STORE_HELP + " [default: adaptlab-rag.db]"),
              embedder: str = typer.Option(None, help="builtin name, hub id or local sentence-transformers folder "
                                                      f"[default: {DEFAULT_EMBEDDER}]"),
              chunk_size: int = typer.Option(None, help="tokens per chunk [default: 200]"),
              overlap: int = typer.Option(None, help="tokens shared by consecutive chunks [default: 40]")) -> None:
    """Index a folder: new and changed files are embedded, deleted ones leave the store."""
    from adaptlab.rag.config import RagConfig
    from adaptlab.rag.embed import Embedder
    from adaptlab.rag.index import folder_documents, sync
    from adaptlab.rag.store import open_store, redact

    with _clear_errors():
        cfg = RagConfig.load(config, docs=folder, store=store, embedder=embedder, chunk_size=chunk_size, overlap=overlap)
        if cfg.docs is None:
            raise ValueError("give the documents folder: adaptlab rag index DIR (or `docs:` in --config)")
        docs, skipped, scope = folder_documents(cfg.docs)
        s = open_store(cfg.store)
        try:
            with _progress() as bar:
                task = bar.add_task("embedding", total=None)
                report = sync(s, Embedder(cfg.embedder), docs, scope, cfg.chunk_size, cfg.overlap,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
        finally:
            s.close()
    _warn_skipped(skipped + report.skipped)
    console.print(f"{redact(cfg.store)}: {len(report.added)} added, {len(report.updated)} updated, {len(report.removed)} "
                  f"removed, {report.unchanged} unchanged; {report.chunks_written} chunks embedded, "
                  f"{report.chunks_total} in the store", highlight=False)


@rag_app.command("ask")
def ask_cmd(question: str = typer.Argument(...),
            config: Path = CONFIG,
            store: str = typer.Option(None, "--store", help=STORE_HELP + " [default: adaptlab-rag.db]"),
            k: int = typer.Option(None, "--k", help="chunks retrieved (hybrid: dense + BM25, RRF) [default: 4]"),
            model: str = typer.Option(None, "--model", help=f"builtin name, hub id or local model folder "
                                                            f"[default: {DEFAULT_MODEL}]"),
            reader: str = typer.Option("extractive", "--reader", help="extractive: the source sentence the question "
                                       "makes most likely (right for small models); generative: the model writes "
                                       "the answer")) -> None:
    """Answer a question from the indexed documents, citing them as \\[n]."""
    from adaptlab.models import load_model
    from adaptlab.rag.answer import ask
    from adaptlab.rag.config import RagConfig
    from adaptlab.rag.embed import Embedder
    from adaptlab.rag.store import StoreError, open_store, redact

    with _clear_errors():
        cfg = RagConfig.load(config, store=store, k=k, model=model)
        s = open_store(cfg.store)
        try:
            if s.info is None:
                raise StoreError(f"{redact(cfg.store)} is empty: index documents first "
                                 f"(adaptlab rag index DIR --store {redact(cfg.store)})")
            lm = load_model(cfg.model)
            result = ask(question, s, Embedder(s.info.embedder), lm.model, lm.tokenizer, cfg.k, reader)
        finally:
            s.close()
    console.print(escape(result.text) if result.text else "[dim](the model gave no answer)[/dim]", highlight=False)
    console.print("\n[bold]sources[/bold]")
    for n, hit in result.sources():
        mark = "" if n in result.cited else " [dim](not cited)[/dim]"
        snippet = " ".join(hit.chunk.text.split())[:70]
        console.print(f"\\[{n}] {escape(_display(hit.chunk.source))} chars {hit.chunk.start}-{hit.chunk.end}{mark}: "
                      f"[dim]{escape(snippet)}...[/dim]", highlight=False)


def _display(source: str) -> str:
    """A source path relative to the working directory where it lies below it."""
    try:
        return str(Path(source).relative_to(Path.cwd()))
    except ValueError:
        return source


OUT = typer.Option("rag-eval", help="folder for results.json and rag-eval.png")


@rag_app.command("eval")
def eval_cmd(limit: int = typer.Option(100, help="questions, a seeded random sample of SQuAD v1.1 dev"),
             store: str = typer.Option(None, "--store", help=STORE_HELP + " (default: a cache file)"),
             k: int = typer.Option(1, "--k", help="sources in the RAG prompt (the builtin 135M model reads one best)"),
             model: str = typer.Option(DEFAULT_MODEL, "--model"),
             embedder: str = typer.Option(DEFAULT_EMBEDDER),
             seed: int = typer.Option(0),
             batch_size: int = typer.Option(8),
             out: Path = OUT) -> None:
    """Closed-book vs RAG on SQuAD v1.1 dev: exact match, F1 and retrieval recall@k, as a table and a plot."""
    from adaptlab.models import load_model
    from adaptlab.rag.embed import Embedder
    from adaptlab.rag.evaluate import evaluate, index_squad, plot, squad_paragraphs, squad_questions, squad_store
    from adaptlab.rag.store import open_store

    with _clear_errors():
        s = open_store(store or squad_store(embedder))
        try:
            emb = Embedder(embedder)
            with _progress() as bar:
                task = bar.add_task("indexing SQuAD paragraphs", total=None)
                index_squad(s, emb, squad_paragraphs(),
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
            questions = squad_questions(limit, seed)
            lm = load_model(model)
            with _progress() as bar:
                task = bar.add_task("answering (closed-book, RAG, extractive)", total=3 * len(questions))
                result = evaluate(s, emb, lm.model, lm.tokenizer, questions, k, batch_size=batch_size,
                                  progress=lambda n: bar.advance(task, n))
        finally:
            s.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(asdict(result), indent=1))
    png = plot(result, out / "rag-eval.png")
    table = Table(title=f"SQuAD v1.1 dev: {result.n_questions} questions, {model}, RAG with top {k}")
    for col in ("route", "exact match", "F1", "contains answer"):
        table.add_column(col)
    for route, scores in result.scores.items():
        table.add_row(route, *(f"{100 * scores[m]:.1f}" for m in ("exact_match", "f1", "contains_answer")))
    console.print(table)
    recall = Table(title="retrieval recall@k (gold paragraph in top k)")
    ks = sorted(next(iter(result.recall.values())))
    recall.add_column("mode")
    for kk in ks:
        recall.add_column(f"@{kk}")
    for mode, by_k in result.recall.items():
        recall.add_row(mode, *(f"{100 * by_k[kk]:.1f}" for kk in ks))
    console.print(recall)
    console.print(f"wrote {out / 'results.json'} and {png}")


def register(app: typer.Typer) -> None:
    app.add_typer(rag_app, name="rag")
