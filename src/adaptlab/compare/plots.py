"""The report's figures as PNG bytes (matplotlib, no display): quality against what it costs."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from adaptlab.compare.stats import pareto_front
from adaptlab.compare.verdict import Summary


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _errorbars(ax, rows: list[Summary], xs: list[float]) -> None:
    ys = [s.score for s in rows]
    err = [[s.score - s.low for s in rows], [s.high - s.score for s in rows]]
    ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=3)
    for s, x in zip(rows, xs):
        ax.annotate(s.route, (x, s.score), textcoords="offset points", xytext=(5, 5), fontsize=8)


def _prompt_lines(ax, summaries: list[Summary]) -> None:
    for s in summaries:
        if s.kind != "train":        # prompting and rag routes train nothing
            ax.axhline(s.score, linestyle="--", linewidth=1, color="grey")
            ax.annotate(s.route, (0.01, s.score), xycoords=("axes fraction", "data"), fontsize=8, color="grey")


def metric_vs_params(summaries: list[Summary], metric: str) -> bytes:
    """Test metric against trainable parameters (log x); prompting routes (none trained) as dashed lines."""
    fig, ax = plt.subplots(figsize=(6, 4))
    trained = [s for s in summaries if s.kind == "train"]
    _errorbars(ax, trained, [max(s.mean("trainable_params"), 1) for s in trained])
    _prompt_lines(ax, summaries)
    if trained:
        ax.set_xscale("log")
    ax.set(xlabel="trainable parameters (log)", ylabel=f"test {metric} (%)", title="Quality vs trainable parameters")
    return _png(fig)


def metric_vs_memory(summaries: list[Summary], metric: str) -> bytes:
    """Test metric against peak memory, with the Pareto front (no route cheaper and better) drawn."""
    fig, ax = plt.subplots(figsize=(6, 4))
    _errorbars(ax, summaries, [s.mean("peak_memory_mb") for s in summaries])
    _front(ax, summaries, lambda s: s.mean("peak_memory_mb"))
    ax.set(xlabel="peak memory (MB)", ylabel=f"test {metric} (%)", title="Quality vs peak memory")
    return _png(fig)


def _front(ax, summaries: list[Summary], cost) -> None:
    points = {s.route: (cost(s), s.score) for s in summaries}
    front = pareto_front(points)
    ax.plot([points[n][0] for n in front], [points[n][1] for n in front], "-s", color="tab:red", markersize=11,
            markerfacecolor="none", label="Pareto front")
    ax.legend(loc="lower right", fontsize=8)


def pareto(summaries: list[Summary], metric: str) -> bytes:
    """Test metric against compute minutes (training + evaluation), Pareto front highlighted."""
    fig, ax = plt.subplots(figsize=(6, 4))
    _errorbars(ax, summaries, [s.compute_min for s in summaries])
    _front(ax, summaries, lambda s: s.compute_min)
    ax.set(xlabel="compute (minutes: training + evaluation)", ylabel=f"test {metric} (%)",
           title="Pareto front: quality vs compute")
    return _png(fig)


def time_per_route(summaries: list[Summary]) -> bytes:
    """Stacked horizontal bars: training, evaluation and load seconds of each route."""
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(summaries) + 1.5))
    names = [s.route for s in summaries]
    left = [0.0] * len(summaries)
    for key, label in (("train_time_s", "train"), ("eval_time_s", "evaluate"), ("load_time_s", "load")):
        vals = [s.mean(key) for s in summaries]
        ax.barh(names, vals, left=left, label=label)
        left = [a + b for a, b in zip(left, vals)]
    ax.invert_yaxis()
    ax.set(xlabel="seconds", title="Time per route")
    ax.legend(fontsize=8)
    return _png(fig)


def curves(summaries: list[Summary], metric: str) -> bytes:
    """Test metric over training steps (a few items per point): where a route starts to over-fit."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in summaries:
        points = s.records[0].get("curve") or []
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=s.route)
    ax.set(xlabel="training step", ylabel=f"test {metric} (%), subset", title="Test metric over training")
    ax.legend(fontsize=8)
    return _png(fig)


def all_plots(summaries: list[Summary], metric: str) -> dict[str, bytes]:
    """Every figure of the report by file name."""
    return {"metric_vs_params.png": metric_vs_params(summaries, metric),
            "metric_vs_memory.png": metric_vs_memory(summaries, metric),
            "pareto.png": pareto(summaries, metric),
            "time_per_route.png": time_per_route(summaries),
            "curves.png": curves(summaries, metric)}
