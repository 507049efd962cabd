"""From the cell records to the report's judgements: per-route summaries, the three PEFT claims and
the recommendation. Nothing here is hard-coded: every sentence is chosen by comparing the numbers.

A route's score over several records (seeds, machines) is the mean; its 95% interval is the Wilson
interval of the pooled items (sum of correct answers over sum of items). Two routes are "clearly"
different only when their intervals do not overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adaptlab.compare.stats import overlap, wilson

PEFT_EXCLUDED = {"full"}          # methods that are not parameter-efficient


@dataclass
class Summary:
    route: str
    kind: str                       # prompt | rag | train
    method: str | None
    score: float                    # percent
    low: float
    high: float
    n: int
    records: list[dict] = field(repr=False, default_factory=list)

    def mean(self, key: str) -> float:
        vals = [r.get(key) or 0.0 for r in self.records]
        return sum(vals) / len(vals)

    @property
    def objective(self) -> str:
        """What a training route optimised (sft, dpo, rloo); the PEFT claims compare sft routes only."""
        return self.records[0].get("objective") or "sft"

    @property
    def peak_gb(self) -> float:
        return self.mean("peak_memory_mb") / 1024

    @property
    def compute_min(self) -> float:
        """Training (or building the rag index) plus evaluation, in minutes."""
        return (self.mean("train_time_s") + self.mean("index_build_s") + self.mean("eval_time_s")) / 60

    @property
    def interval(self) -> tuple[float, float]:
        return self.low, self.high

    def forgetting(self, base: Summary | None) -> dict[str, float]:
        """Change of MMLU accuracy (points) and general-text cross-entropy (nats/token) from the base."""
        if base is None or self.kind != "train":
            return {}
        mine = [r["forgetting"] for r in self.records if r.get("forgetting")]
        ref = [r["forgetting"] for r in base.records if r.get("forgetting")]
        out = {}
        for key in ("mmlu_acc", "text_ce"):
            if mine and ref and all(key in f for f in mine + ref):
                out[key] = sum(f[key] for f in mine) / len(mine) - sum(f[key] for f in ref) / len(ref)
        return out

    def overfit_gap(self) -> float | None:
        gaps = [r["train"]["score"] - r["test"]["score"] for r in self.records if r.get("train")]
        return sum(gaps) / len(gaps) if gaps else None


def summarize(records: list[dict]) -> dict[str, Summary]:
    """One summary per route over its finished records, in the order routes first appear."""
    out: dict[str, Summary] = {}
    for route in dict.fromkeys(r["route"] for r in records):
        ok = [r for r in records if r["route"] == route and r.get("status") == "ok"]
        if not ok:
            continue
        n = sum(r["test"]["n"] for r in ok)
        hits = sum(r["test"]["score"] / 100 * r["test"]["n"] for r in ok)
        low, high = wilson(hits, n)
        out[route] = Summary(route, ok[0]["kind"], ok[0].get("method"), sum(r["test"]["score"] for r in ok) / len(ok),
                             100 * low, 100 * high, n, ok)
    return out


def base_of(summaries: dict[str, Summary]) -> Summary | None:
    """The base model's row: the prompting route that ran the forgetting probe."""
    return next((s for s in summaries.values() if s.kind == "prompt" and any(r.get("forgetting") for r in s.records)),
                None)


def _fmt(s: Summary) -> str:
    return f"{s.route} {s.score:.1f}% [{s.low:.1f}, {s.high:.1f}]"


def _compare(a: Summary, b: Summary) -> str:
    """'overlap' | 'higher' | 'lower': how a stands against b."""
    if overlap(a.interval, b.interval):
        return "overlap"
    return "higher" if a.score > b.score else "lower"


VERDICT = {"overlap": "supported", "higher": "supported", "lower": "not supported"}


def _versus(a: Summary, b: Summary) -> tuple[str, str]:
    """(verdict on "a is no worse than b", the evidence)."""
    how = _compare(a, b)
    return VERDICT[how], f"{_fmt(a)} vs {_fmt(b)}: intervals {'overlap' if how == 'overlap' else 'do not overlap'}"


def _forgets_less(peft: list[Summary], full: Summary, base: Summary | None) -> tuple[str, str] | None:
    """PEFT routes' mean rise of general-text cross-entropy against full fine-tuning's (and the MMLU change)."""
    f_full, f_peft = full.forgetting(base), [s.forgetting(base) for s in peft]
    if "text_ce" not in f_full or not all("text_ce" in f for f in f_peft):
        return None
    mean = lambda key: sum(f.get(key, 0.0) for f in f_peft) / len(f_peft)
    why = (f"general-text cross-entropy changes by {mean('text_ce'):+.3f} nats/token on average over PEFT routes vs "
           f"{f_full['text_ce']:+.3f} for full fine-tuning")
    if "mmlu_acc" in f_full:
        why += f"; MMLU changes by {mean('mmlu_acc'):+.1f} vs {f_full['mmlu_acc']:+.1f} points"
    return ("supported" if mean("text_ce") < f_full["text_ce"] else "not supported"), why


def claims(summaries: dict[str, Summary]) -> list[tuple[str, str, str]]:
    """(claim, verdict, evidence) for the three PEFT claims this run can speak to."""
    trained = [s for s in summaries.values() if s.kind == "train" and s.objective == "sft"]
    full = next((s for s in trained if s.method == "full"), None)
    peft = [s for s in trained if s.method not in PEFT_EXCLUDED]
    out = []
    if full and peft:
        best = max(peft, key=lambda s: s.score)
        out.append(("PEFT matches full fine-tuning", *_versus(best, full)))
        if forgets := _forgets_less(peft, full, base_of(summaries)):
            out.append(("PEFT forgets less", *forgets))
    if "qlora" in summaries and "lora" in summaries:
        out.append(("QLoRA costs no quality", *_versus(summaries["qlora"], summaries["lora"])))
    return out


def _best(summaries: list[Summary], value) -> Summary:
    return max(summaries, key=value)


def recommendation(summaries: dict[str, Summary]) -> str:
    """A paragraph naming the best route overall, per GB of peak memory and per minute of compute."""
    rows = list(summaries.values())
    if not rows:
        return "No route finished, so there is nothing to recommend."
    best = _best(rows, lambda s: s.score)
    ties = [s.route for s in rows if s is not best and overlap(s.interval, best.interval)]
    text = [f"Best overall: **{best.route}** ({best.score:.1f}%, 95% interval {best.low:.1f}-{best.high:.1f})."]
    if ties:
        text.append(f"Its interval overlaps {', '.join(ties)}, so this run cannot say that {best.route} is clearly "
                    "better than those; more test items or seeds would separate them.")
    else:
        text.append("Its interval overlaps no other route's: it is clearly the best here.")
    base = base_of(summaries)
    floor = base.score if base else 0.0
    gain = lambda s: s.score - floor
    gainers = [s for s in rows if gain(s) > 0 and s is not base]
    ref = f"above {base.route}" if base else ""
    if gainers:
        per_gb = _best(gainers, lambda s: gain(s) / max(s.peak_gb, 1e-6))
        per_min = _best(gainers, lambda s: gain(s) / max(s.compute_min, 1e-6))
        text.append(f"Per GB of peak memory: **{per_gb.route}** ({gain(per_gb) / max(per_gb.peak_gb, 1e-6):.1f} points "
                    f"{ref} per GB). Per minute of compute (training or indexing + evaluation): **{per_min.route}** "
                    f"({gain(per_min) / max(per_min.compute_min, 1e-6):.1f} points {ref} per minute).")
    else:
        text.append(f"No route scored above {base.route if base else 'zero'}, so none buys quality per GB or per minute.")
    return " ".join(text)


def peft_vs_full(summaries: dict[str, Summary]) -> list[list[str]]:
    """Rows of the PEFT-vs-full table (as in Figure 2 of the seed): each PEFT route beside full fine-tuning."""
    full = next((s for s in summaries.values() if s.method == "full" and s.objective == "sft"), None)
    if full is None:
        return []
    base = base_of(summaries)
    rows = []
    for s in summaries.values():
        if s.kind != "train" or s.objective != "sft":
            continue
        f = s.forgetting(base)
        share = s.mean("trainable_share")
        rows.append([s.route, f"{s.score:.1f} [{s.low:.1f}, {s.high:.1f}]", f"{s.score - full.score:+.1f}",
                     "yes" if overlap(s.interval, full.interval) else "no", f"{100 * share:.3g}%",
                     f"{s.peak_gb / max(full.peak_gb, 1e-9):.2f}x",
                     f"{f['mmlu_acc']:+.1f}" if "mmlu_acc" in f else "n/a",
                     f"{f['text_ce']:+.3f}" if "text_ce" in f else "n/a"])
    return rows
