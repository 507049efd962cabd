"""Run a classification task zero-shot or few-shot with a PromptSpec: predictions and accuracy.

Two ways to read the model's answer (`MODES`):

- `constrained`: score every label's answer word as the continuation of the prompt and take the most
  likely, argmax_y sum_t log p(w_y,t | prompt, w_y,<t) (lm-evaluation-harness's `acc`); the answer is
  always a valid label. (As in lm-eval, the template's newline ending the prompt is scored with each
  word; it adds the same term to every label, so the choice does not change.)
- `generate`: greedy decoding, then the label whose answer word the output mentions last (reasoning
  comes before the answer); an output naming no label counts as wrong.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from adaptlab.data.records import Classification
from adaptlab.eval.metrics import exact_match
from adaptlab.models.generation import generate, loglikelihoods
from adaptlab.prompting.exemplars import Embed, select_exemplars
from adaptlab.prompting.render import build_messages, render_prompt
from adaptlab.prompting.spec import PromptSpec


@dataclass(frozen=True)
class ClassifyTask:
    """Items to label, a disjoint pool to draw exemplars from, the label set and a default prompt."""

    name: str
    items: list[Classification]
    pool: list[Classification]
    labels: list[str]
    spec: PromptSpec


@dataclass
class Prediction:
    text: str
    gold: str
    pred: str | None    # a task label, or None when a generated answer named none
    output: str         # the generated text, or each answer word's log-likelihood
    score: float = 0.0  # this item's metric (1.0 correct, 0.0 wrong)


@dataclass
class PromptResult:
    task: str
    mode: str
    shots: int
    selection: str
    components: list[str]
    metric: str
    score: float
    valid: float        # share of answers that are a task label (1.0 in constrained mode)
    majority: float     # accuracy of always answering the pool's most common label, for reference
    n: int
    predictions: list[Prediction] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def build_prompts(tokenizer, task: ClassifyTask, spec: PromptSpec, items: Sequence[Classification],
                  embed: Embed | None = None) -> list[str]:
    """One rendered prompt per item, with `spec.shots` exemplars chosen by `spec.selection`."""
    choices = [spec.answer(label) for label in task.labels]
    pool = [Classification(e.text, e.label) for e in spec.exemplars] or task.pool
    if spec.selection == "fixed" and spec.exemplars and spec.shots > len(spec.exemplars):
        raise ValueError(f"{spec.shots} shots asked for, but the spec lists only {len(spec.exemplars)} exemplars")
    unknown = sorted({e.label for e in pool} - set(task.labels)) if spec.shots else []
    if unknown:
        raise ValueError(f"exemplar labels {unknown} are not labels of task {task.name!r} ({', '.join(task.labels)})")
    shots = select_exemplars(spec.selection, pool, [it.text for it in items], spec.shots, spec.seed, embed)
    return [render_prompt(tokenizer, build_messages(spec, it.text, [(e.text, spec.answer(e.label)) for e in ex],
                                                    choices))
            for it, ex in zip(items, shots)]


def parse_label(output: str, answers: dict[str, str]) -> str | None:
    """The label whose answer word occurs last in `output` (case-insensitive, whole words), or None."""
    best, best_at = None, -1
    for label, word in answers.items():
        for m in re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", output, flags=re.IGNORECASE):
            if m.start() > best_at:
                best, best_at = label, m.start()
    return best


def _constrained(model, tokenizer, prompts: list[str], answers: dict[str, str], opts: dict
                 ) -> list[tuple[str | None, str]]:
    labels = list(answers)
    scores = loglikelihoods(model, tokenizer, [(p, answers[y]) for p in prompts for y in labels],
                            batch_size=opts.get("batch_size", 16))
    out = []
    for i in range(len(prompts)):
        row = [s for s, _ in scores[i * len(labels): (i + 1) * len(labels)]]
        best = max(range(len(labels)), key=row.__getitem__)
        out.append((labels[best], " ".join(f"{answers[y]}={s:.2f}" for y, s in zip(labels, row))))
    return out


def _generate(model, tokenizer, prompts: list[str], answers: dict[str, str], opts: dict
              ) -> list[tuple[str | None, str]]:
    texts = generate(model, tokenizer, prompts, max_new_tokens=opts.get("max_new_tokens", 32),
                     batch_size=opts.get("batch_size", 8))
    return [(parse_label(t, answers), t) for t in texts]


Mode = Callable[..., list[tuple[str | None, str]]]
MODES: dict[str, Mode] = {"constrained": _constrained, "generate": _generate}


def run_prompt(model, tokenizer, task: ClassifyTask, spec: PromptSpec | None = None, *, mode: str = "constrained",
               limit: int | None = None, embed: Embed | None = None, batch_size: int = 16,
               max_new_tokens: int = 32) -> PromptResult:
    """Label `task.items[:limit]` with the model prompted by `spec` (default: the task's own)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    spec = spec or task.spec
    items = task.items[:limit] if limit else task.items
    answers = {label: spec.answer(label) for label in task.labels}
    if len(set(answers.values())) != len(answers):
        raise ValueError(f"two labels share an answer word: {answers}")
    prompts = build_prompts(tokenizer, task, spec, items, embed)
    outcomes = MODES[mode](model, tokenizer, prompts, answers,
                           {"batch_size": batch_size, "max_new_tokens": max_new_tokens})
    preds = [Prediction(it.text, it.label, pred, out, exact_match(pred or "", [it.label]))
             for it, (pred, out) in zip(items, outcomes)]
    n = max(len(preds), 1)
    most_common = Counter(e.label for e in task.pool).most_common(1)
    majority_label = most_common[0][0] if most_common else None
    return PromptResult(
        task=task.name, mode=mode, shots=spec.shots, selection=spec.selection, components=spec.components(),
        metric="accuracy", score=sum(p.score for p in preds) / n,
        valid=sum(p.pred is not None for p in preds) / n,
        majority=sum(p.gold == majority_label for p in preds) / n, n=len(preds), predictions=preds)
