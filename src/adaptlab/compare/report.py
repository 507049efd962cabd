"""The report: `report.md`, a self-contained `report.html` (plots embedded, opens offline) and the PNGs.

Both documents come from one list of blocks (heading, paragraph, table, image), so they always say
the same thing; the HTML marks each results row with `data-route` and each figure with its file name.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.atomic import write_bytes, write_text
from adaptlab.compare import plots
from adaptlab.compare.taskdata import SPLIT_SEED
from adaptlab.compare.verdict import Summary, base_of, claims, peft_vs_full, recommendation, summarize


@dataclass
class Block:
    kind: str                                   # h | p | table | img
    text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)   # table: one key per row (the route)


def _mb(n: float | None) -> str:
    return f"{n / 2**20:.1f}" if n else "0"


def _result_row(s: Summary, base: Summary | None) -> list[str]:
    f = s.forgetting(base)
    gap = s.overfit_gap()
    share = s.mean("trainable_share")
    return [s.route, "ok" if len(s.records) == 1 else f"ok x{len(s.records)}",
            f"{s.score:.1f} [{s.low:.1f}, {s.high:.1f}] (n={s.n})",
            f"{s.mean('trainable_params'):,.0f} ({100 * share:.3g}%)", f"{s.mean('peak_memory_mb'):,.0f}",
            f"{s.mean('steps'):.0f}", f"{s.mean('tokens'):,.0f}", f"{s.mean('train_time_s'):.1f}",
            f"{s.mean('tokens_per_s'):.0f}" if s.kind == "train" else "", f"{s.mean('eval_time_s'):.1f}",
            _mb(s.mean("artifact_bytes")), f"{s.mean('load_time_s'):.2f}",
            f"{f['mmlu_acc']:+.1f}" if "mmlu_acc" in f else "", f"{f['text_ce']:+.3f}" if "text_ce" in f else "",
            f"{gap:+.1f}" if gap is not None else ""]


RESULT_HEADER = ["route", "status", "{metric} % [95% CI]", "trainable params (share)", "peak MB", "steps",
                 "train tokens", "train s", "train tok/s", "eval s", "artifact MB", "load s", "MMLU change",
                 "text CE change", "train-test gap"]


def results_table(records: list[dict], summaries: dict[str, Summary], metric: str) -> Block:
    base = base_of(summaries)
    rows, keys = [], []
    for route in dict.fromkeys(r["route"] for r in records):
        if route in summaries:
            rows.append(_result_row(summaries[route], base))
        else:
            last = [r for r in records if r["route"] == route][-1]
            why = last.get("reason") or last.get("error") or ""
            rows.append([route, last["status"], why] + [""] * (len(RESULT_HEADER) - 3))
        keys.append(route)
    header = [h.format(metric=metric) for h in RESULT_HEADER]
    return Block("table", header=header, rows=rows, keys=keys)


def _setup(run: dict, records: list[dict]) -> str:
    recipe = run["recipe"]
    first = next((r for r in records if r.get("hardware")), {})
    hw = first.get("hardware", {})
    carved = (f" The task has no test split: {run['n_test']} rows were carved out of `{recipe['task']['data']}` with "
              f"a fixed seed ({SPLIT_SEED}); none of them is in the training split." if run.get("test_carved") else "")
    return (f"Model `{recipe['model']}`, task `{recipe['task']['name']}` ({recipe['task']['data']}): "
            f"{run['n_train']} training rows, {run['n_test']} test rows.{carved} Budget {run['budget_s']:.0f} s "
            f"for the whole matrix; " + (f"it took {run['elapsed_s']:.0f} s" if "elapsed_s" in run else "the run has not "
            "finished (rows missing below have not run yet)") + ". Each training route got "
            + ("the same wall-clock share" if recipe["share"] == "time" else "the same number of training tokens")
            + f". Hardware: {hw.get('cpu', '?')}, {hw.get('cores', '?')} cores"
            + (f", {hw['gpu']}" if hw.get("gpu") else "") + ". Every cell ran in its own process, so its peak "
            "memory is its own; scores are on the same test items through the same evaluation path." + _starved(run))


def _starved(run: dict) -> str:
    plan = run.get("plan")
    if not plan or plan["training_s"] > 0:
        return ""
    least = "one step" if plan.get("speeds") else "its timed steps and one more"   # warm-up plan, or cells timing
    return (" **The budget was spent before training could start** (loading, evaluation and measurement took it "
            f"all), so every training route ran its least: {least}: give a larger budget, fewer routes or fewer "
            "test items.")


def _budget_table(run: dict, summaries: dict[str, Summary]) -> Block:
    """Steps and step time per training route: planned from the warm-up, or (cells that timed themselves
    under `share: time`) chosen by the cell from its seconds."""
    plan = run.get("plan") or {}
    speeds = plan.get("speeds") or {s.route: s.records[-1]["speed"] for s in summaries.values()
                                    if s.kind == "train" and s.records[-1].get("speed")}
    rows, keys = [], []
    for route, speed in speeds.items():
        s = summaries.get(route)
        steps = plan["steps"].get(route) or (f"{s.mean('steps'):.0f}" if s else "")
        rows.append([route, str(steps), f"{speed['step_s']:.2f}", f"{speed['tokens_per_step']:.0f}",
                     f"{s.mean('tokens'):,.0f}" if s else "", f"{s.mean('train_time_s'):.1f}" if s else "",
                     f"{s.mean('wall_s'):.1f}" if s else ""])
        keys.append(route)
    return Block("table", header=["route", "steps", "s/step (timed)", "tokens/step", "tokens trained",
                                  "train s", "cell wall s"], rows=rows, keys=keys)


def _rag_table(summaries: dict[str, Summary]) -> Block | None:
    """Each rag route's retriever settings and its deployment cost: the index's build time and size on disk."""
    rows = [[s.route, s.records[-1]["rag"]["settings"], str(s.records[-1]["rag"]["chunks"]),
             f"{s.records[-1]['rag']['index_build_s']:.1f}", _mb(s.records[-1]["rag"]["index_bytes"]),
             f"{s.mean('eval_time_s'):.1f}"] for s in summaries.values() if s.kind == "rag"]
    if not rows:
        return None
    return Block("table", header=["route", "retriever", "chunks", "index build s", "index MB",
                                  "retrieve + answer s"], rows=rows, keys=[r[0] for r in rows])


def blocks(run: dict, records: list[dict], images: list[str]) -> list[Block]:
    summaries = summarize(records)
    metric = next((r["test"]["metric"] for r in records if r.get("test")), "score")
    recipe = run["recipe"]
    out = [Block("h", f"adaptlab compare: {recipe['task']['name']} on {recipe['model']}"),
           Block("p", _setup(run, records)), Block("h", "Results"), results_table(records, summaries, metric),
           Block("h", "Recommendation"), Block("p", recommendation(summaries))]
    if rag := _rag_table(summaries):
        out += [Block("h", "RAG: retriever and deployment cost"), rag]
    if run.get("plan"):
        out += [Block("h", "Budget: what each training route got"), _budget_table(run, summaries)]
    if table := peft_vs_full(summaries):
        out += [Block("h", "PEFT vs full fine-tuning"),
                Block("table", header=["route", f"{metric} % [95% CI]", "vs full", "intervals overlap",
                                       "trainable share", "peak memory vs full", "MMLU change", "text CE change"],
                      rows=table, keys=[r[0] for r in table])]
    if found := claims(summaries):
        out += [Block("h", "What this run says about the PEFT claims"),
                Block("table", header=["claim", "verdict", "evidence"], rows=[list(c) for c in found],
                      keys=[c[0] for c in found])]
    out += [Block("h", "Plots")] + [Block("img", name) for name in images]
    out += [Block("h", "Reproduce a score"),
            Block("p", f"Every cell's record is `cells/<route>-s<seed>/record.json`. A trained cell's score is "
                       f"`adaptlab eval --tasks {run.get('test_task', 'data/test.yaml')} --chat-template --adapter "
                       "<artifact>` on its artifact (`artifact` in the record).")]
    return out


def _cell_md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: list[Block]) -> str:
    lines = []
    for i, b in enumerate(doc):
        if b.kind == "h":
            lines += [("# " if i == 0 else "## ") + b.text, ""]
        elif b.kind == "p":
            lines += [b.text, ""]
        elif b.kind == "table":
            lines += ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in b.rows] + [""]
        elif b.kind == "img":
            lines += [f"![{b.text}]({b.text})", ""]
    return "\n".join(lines)


CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:4px 6px;"
       "text-align:left}th{background:#f3f3f3}img{max-width:48%;margin:0.5%;border:1px solid #eee}"
       "tr[data-status=skipped],tr[data-status=failed]{color:#a33}")


def _inline(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def to_html(doc: list[Block], pngs: dict[str, bytes]) -> str:
    parts = []
    for i, b in enumerate(doc):
        if b.kind == "h":
            parts.append(f"<h{1 if i == 0 else 2}>{html.escape(b.text)}</h{1 if i == 0 else 2}>")
        elif b.kind == "p":
            parts.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            body = "".join(f'<tr data-route="{html.escape(k)}" data-status="{html.escape(row[1].split()[0])}">'
                           + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for k, row in zip(b.keys, b.rows))
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b.kind == "img":
            data = base64.b64encode(pngs[b.text]).decode()
            parts.append(f'<img data-plot="{b.text}" alt="{b.text}" src="data:image/png;base64,{data}">')
    title = html.escape(doc[0].text) if doc else "adaptlab compare"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>")



def write_report(run: dict, records: list[dict], out: Path) -> dict[str, Path]:
    """Write the PNGs, report.md and report.html into `out`; returns their paths by name."""
    out.mkdir(parents=True, exist_ok=True)
    summaries = summarize(records)
    metric = next((r["test"]["metric"] for r in records if r.get("test")), "score")
    pngs = plots.all_plots(list(summaries.values()), metric) if summaries else {}
    doc = blocks(run, records, list(pngs))
    paths = {name: out / name for name in pngs}
    for name, data in pngs.items():
        write_bytes(paths[name], data)
    paths["report.md"], paths["report.html"] = out / "report.md", out / "report.html"
    write_text(paths["report.md"], to_markdown(doc))
    write_text(paths["report.html"], to_html(doc, pngs))
    return paths
