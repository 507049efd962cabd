"""The time budget: parse it, and give each training route its share of it.

After a warm-up that times a few steps of every training route, the seconds left for training are

    T = (budget - elapsed - sum_i overhead_i) * (1 - margin)

where overhead_i is route i's setup, evaluation and measurement time. With `share: time` every route
trains for T / n seconds: steps_i = floor(T / (n * s_i)) for s_i seconds per step. With `share: tokens`
every route trains on the same number of tokens N, so sum_i N * s_i / k_i = T for k_i tokens per step:
N = T / sum_i (s_i / k_i) and steps_i = floor(N / k_i). Every route gets at least one step.

Under `share: time` the step time need not be known before a route starts: each cell gets T / n seconds and
times its own first steps (`compare/budgeted.py`), so the overhead of a route is estimated from the
prompting cell (load, evaluation, forgetting) instead of a separate warm-up.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_budget(text: str, named: dict[str, str]) -> float:
    """Seconds in a budget such as `90s`, `20m`, `1.5h`, `300` (seconds) or a name from the recipe's `budgets`."""
    raw = named.get(text, text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", raw)
    if not m or float(m.group(1)) <= 0:
        names = f" or one of: {', '.join(sorted(named))}" if named else ""
        raise ValueError(f"budget {text!r}: give a duration like 90s, 20m or 1h{names}")
    return float(m.group(1)) * UNITS[m.group(2) or "s"]


@dataclass
class Speed:
    """What the warm-up measured for one training route."""
    route: str
    setup_s: float             # load the model and apply the method
    step_s: float              # seconds per optimizer step (after the first)
    tokens_per_step: float

    def as_dict(self) -> dict:
        return asdict(self)


def training_seconds(budget_s: float, elapsed_s: float, overheads_s: list[float], margin: float = 0.1) -> float:
    """Seconds left for all training steps together once the fixed costs are paid (never below zero)."""
    return max(0.0, (budget_s - elapsed_s - sum(overheads_s)) * (1 - margin))


def steps_for(seconds: float, step_s: float, least: int) -> int:
    """Steps that fit `seconds` at `step_s` seconds each: floor(seconds / step_s), never fewer than `least`."""
    return max(least, math.floor(seconds / max(step_s, 1e-9)))


def plan_steps(speeds: list[Speed], seconds: float, share: str) -> dict[str, int]:
    """Steps per route: the same wall clock (`time`) or the same number of tokens (`tokens`)."""
    if not speeds:
        return {}
    if share == "time":
        return {s.route: max(1, math.floor(seconds / len(speeds) / s.step_s)) for s in speeds}
    if share == "tokens":
        tokens = seconds / sum(s.step_s / s.tokens_per_step for s in speeds)
        return {s.route: max(1, math.floor(tokens / s.tokens_per_step)) for s in speeds}
    raise ValueError(f"share {share!r}: choose time or tokens")
