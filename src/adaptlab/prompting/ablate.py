"""Ablation: switch each prompt component on and off and measure its effect on the task metric.

Two views of each component c (the exemplars count as a component when the spec has shots):

- leave-one-out: effect_off(c) = score(full) - score(full without c), what removing c costs;
- add-one-in:    effect_on(c)  = score(bare with only c) - score(bare), what c alone brings,

where `full` is the spec as given and `bare` is the same spec with every component off, zero-shot.
Components interact, so the two views can disagree; both are reported. Every variant runs on the
same items, so each effect comes with its paired standard error, SE = sd(a_i - b_i) / sqrt(n) over
the items' scores a_i, b_i of the two variants compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from adaptlab.prompting.run import PromptResult, PromptTask, run_prompt
from adaptlab.prompting.spec import COMPONENTS, PromptSpec

EXEMPLARS = "exemplars"


@dataclass
class ComponentEffect:
    component: str
    without: float      # score of the full spec with this component off
    only: float         # score of the bare spec with only this component on
    effect_off: float   # full - without
    effect_on: float    # only - bare
    se_off: float       # paired standard error of effect_off
    se_on: float        # paired standard error of effect_on


@dataclass
class AblationResult:
    task: str
    mode: str
    shots: int
    n: int
    metric: str
    full: float
    bare: float
    effects: list[ComponentEffect]

    def to_dict(self) -> dict:
        return asdict(self)


def switches(spec: PromptSpec) -> list[str]:
    """What the ablation switches: the components the spec has on, and the exemplars if it has shots."""
    return spec.components() + ([EXEMPLARS] if spec.shots else [])


def variants(spec: PromptSpec) -> dict[str, PromptSpec]:
    """Every spec the ablation runs: `full`, `bare`, and `-c` (without c) / `+c` (only c) per switch."""
    bare = spec.only().model_copy(update={"shots": 0})
    out = {"full": spec, "bare": bare}
    for c in switches(spec):
        if c == EXEMPLARS:
            out[f"-{c}"] = spec.model_copy(update={"shots": 0})
            out[f"+{c}"] = bare.model_copy(update={"shots": spec.shots})
        else:
            out[f"-{c}"] = spec.without(c)
            out[f"+{c}"] = bare.model_copy(update={f: getattr(spec, f) for f in COMPONENTS[c]})
    return out


def paired_se(a: PromptResult, b: PromptResult) -> float:
    """Standard error of mean(a_i - b_i) over the items both runs scored: sd(d, ddof=1) / sqrt(n)."""
    d = [pa.score - pb.score for pa, pb in zip(a.predictions, b.predictions, strict=True)]
    if len(d) < 2:
        return 0.0
    mean = sum(d) / len(d)
    return math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))


def ablate(model, tokenizer, task: PromptTask, spec: PromptSpec | None = None, *, mode: str | None = None,
           limit: int | None = None, run: Callable[..., PromptResult] = run_prompt, **run_kwargs) -> AblationResult:
    """Run every variant of `spec` (default: the task's own) on the same items and tabulate the effects."""
    spec, mode = spec or task.spec, mode or task.mode
    results = {name: run(model, tokenizer, task, variant, mode=mode, limit=limit, **run_kwargs)
               for name, variant in variants(spec).items()}
    score = {name: r.score for name, r in results.items()}
    full, bare = score["full"], score["bare"]
    effects = [ComponentEffect(c, score[f"-{c}"], score[f"+{c}"], full - score[f"-{c}"], score[f"+{c}"] - bare,
                               paired_se(results["full"], results[f"-{c}"]), paired_se(results[f"+{c}"], results["bare"]))
               for c in switches(spec)]
    return AblationResult(task.name, mode, spec.shots, results["full"].n, results["full"].metric, full, bare, effects)


def plot_ablation(result: AblationResult, path: str | Path) -> Path:
    """A PNG bar chart of each component's two effects."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [e.component for e in result.effects]
    ys = range(len(names))
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.6 * max(len(names), 1)))
    ax.barh([y - 0.2 for y in ys], [e.effect_off for e in result.effects], height=0.4,
            xerr=[e.se_off for e in result.effects], capsize=3, label="full - without it (leave-one-out)")
    ax.barh([y + 0.2 for y in ys], [e.effect_on for e in result.effects], height=0.4,
            xerr=[e.se_on for e in result.effects], capsize=3, label="only it - bare (add-one-in)")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(list(ys), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"effect on {result.metric} (bars: ±1 paired standard error)")
    ax.set_title(f"{result.task}: {result.mode}, {result.shots}-shot, n={result.n} "
                 f"(full {result.full:.3f}, bare {result.bare:.3f})", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
