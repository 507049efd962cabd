"""Run a task zero-shot or few-shot with a PromptSpec: predictions and the task's metric.

A classification task (`ClassifyTask`) is read in one of the two `MODES` below; a generative task
(`generative.GenerateTask`: GSM8K, SQuAD, a file of {instruction, output} rows) is always generated
and scored by its own extractor and metric.

Prompting only builds contexts (`spec_context`); scoring is the eval harness's (`evaluate_task`).

Two ways to read the model's answer (`MODES`):

- `constrained`: score every label's answer word as the continuation of the prompt and take the most
  likely, argmax_y sum_t log p(w_y,t | prompt, w_y,<t) (lm-evaluation-harness's `acc`); the answer is
  always a valid label. (As in lm-eval, the template's newline ending the prompt is scored with each
  word; it adds the same term to every label, so the choice does not change.)
- `generate`: greedy decoding, then the label whose answer word the output mentions last (reasoning
  comes before the answer); an output naming no label counts as wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from adaptlab.data.records import Classification
from adaptlab.eval.kinds import Scored
from adaptlab.eval.runner import ContextBuilder, evaluate_task
from adaptlab.eval.tasks import Protocol, Sample, Task
from adaptlab.prompting.exemplars import Embed, select_exemplars
from adaptlab.prompting.generative import GenerateTask
from adaptlab.prompting.render import build_messages, render_prompt
from adaptlab.prompting.spec import PromptSpec
from adaptlab.registry import lookup


@dataclass(frozen=True)
class ClassifyTask:
    """Items to label, a disjoint pool to draw exemplars from, the label set and a default prompt."""

    name: str
    items: list[Classification]
    pool: list[Classification]
    labels: list[str]
    spec: PromptSpec
    mode: str = "constrained"    # the default way the label is read

    def eval_task(self, spec: PromptSpec, items: Sequence[Classification], mode: str,
                  max_new_tokens: int = 32) -> Task:
        """The items as an eval task (see `as_eval_task`)."""
        return as_eval_task(self, spec, items, mode, max_new_tokens)


PromptTask = ClassifyTask | GenerateTask


@dataclass
class Prediction:
    text: str
    gold: str
    pred: str | None    # a task label (or a generative task's extracted answer); None when none was read
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
    majority: float | None   # accuracy of always answering the pool's most common label (classify only)
    n: int
    predictions: list[Prediction] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def build_prompts(tokenizer, task: PromptTask, spec: PromptSpec, items: Sequence[Classification],
                  embed: Embed | None = None) -> list[str]:
    """One rendered prompt per item, with `spec.shots` exemplars chosen by `spec.selection` (a generative
    task has no labels: its exemplars' answers are shown as they are)."""
    choices = [spec.answer(label) for label in task.labels]
    pool = [Classification(e.text, e.label) for e in spec.exemplars] or task.pool
    if spec.selection == "fixed" and spec.exemplars and spec.shots > len(spec.exemplars):
        raise ValueError(f"{spec.shots} shots asked for, but the spec lists only {len(spec.exemplars)} exemplars")
    unknown = sorted({e.label for e in pool} - set(task.labels)) if spec.shots and task.labels else []
    if unknown:
        raise ValueError(f"exemplar labels {unknown} are not labels of task {task.name!r} ({', '.join(task.labels)})")
    shots = select_exemplars(spec.selection, pool, [it.text for it in items], spec.shots, spec.seed, embed)
    return [render_prompt(tokenizer, build_messages(spec, it.text, [(e.text, spec.answer(e.label)) for e in ex],
                                                    choices))
            for it, ex in zip(items, shots)]


def spec_context(tokenizer, task: PromptTask, spec: PromptSpec, embed: Embed | None = None) -> ContextBuilder:
    """The prompting route's context builder for `evaluate_task`: each sample's text (`meta["text"]`)
    rendered with the spec and its exemplars through the chat template."""
    def build(samples: Sequence[Sample]) -> list[str]:
        items = [Classification(s.meta["text"], s.meta["label"]) for s in samples]
        return build_prompts(tokenizer, task, spec, items, embed)
    return build


# how the label is read -> the eval kind that reads it: scored answer words, or generate and parse
MODES: dict[str, str] = {"constrained": "classify", "generate": "generate"}


def as_eval_task(task: ClassifyTask, spec: PromptSpec, items: Sequence[Classification], mode: str,
                 max_new_tokens: int = 32) -> Task:
    """The items as an eval task whose choices are the spec's answer words: `classify` scores each word's
    log-likelihood (acc), `generate` finds the word the output names last (exact match, extractor `choice`)."""
    kind = lookup(MODES, mode, "mode")
    words = [spec.answer(label) for label in task.labels]
    if len(set(words)) != len(words):
        raise ValueError(f"two labels share an answer word: {dict(zip(task.labels, words))}")

    def target(label: str) -> int | list[str]:
        if kind == "generate":
            return [spec.answer(label)]
        return task.labels.index(label) if label in task.labels else -1

    samples = [Sample(f"{task.name}/{i}", it.text, target(it.label), choices=words,
                      meta={"text": it.text, "label": it.label}) for i, it in enumerate(items)]
    return Task(task.name, "prompting", kind, "acc" if kind == "classify" else "exact_match", spec.shots,
                lambda _: samples, extract="choice", max_new_tokens=max_new_tokens)


def _prediction(s: Scored, metric: str, labels: dict[str, str] | None) -> Prediction:
    """A scored sample as a prediction: the label read (a generative task's: the answer extracted), and the
    output (text, or each word's log-likelihood)."""
    if "loglikelihoods" in s.extra:
        shown = " ".join(f"{w}={ll:.2f}" for w, ll in zip(s.sample.choices, s.extra["loglikelihoods"]))
        return Prediction(s.sample.meta["text"], s.sample.meta["label"], labels[s.output], shown, s.scores[metric])
    if labels is None:
        return Prediction(s.sample.meta["text"], " | ".join(s.sample.target), s.answer, s.output, s.scores[metric])
    return Prediction(s.sample.meta["text"], s.sample.meta["label"], labels.get(s.answer or ""), s.output,
                      s.scores[metric])


def run_prompt(model, tokenizer, task: PromptTask, spec: PromptSpec | None = None, *, mode: str | None = None,
               limit: int | None = None, embed: Embed | None = None, batch_size: int = 16,
               max_new_tokens: int = 32) -> PromptResult:
    """Answer `task.items[:limit]` with the model prompted by `spec` (default: the task's own) and `mode`
    (default: the task's), through the one eval path (`evaluate_task` with `spec_context`)."""
    spec, mode = spec or task.spec, mode or task.mode
    items = task.items[:limit] if limit else task.items
    eval_task = task.eval_task(spec, items, mode, max_new_tokens)
    result = evaluate_task(model, tokenizer, eval_task, Protocol(shots=spec.shots),
                           spec_context(tokenizer, task, spec, embed), batch_size=batch_size)
    labels = {spec.answer(label).strip(): label for label in task.labels} if task.labels else None
    preds = [_prediction(s, result.metric, labels) for s in result.scored]
    n = max(len(preds), 1)
    return PromptResult(
        task=task.name, mode=mode, shots=spec.shots, selection=spec.selection, components=spec.components(),
        metric="accuracy" if task.labels else result.metric, score=sum(p.score for p in preds) / n,
        valid=sum(p.pred is not None for p in preds) / n, majority=_majority(task, preds), n=len(preds),
        predictions=preds)


def _majority(task: PromptTask, preds: list[Prediction]) -> float | None:
    """Accuracy of always answering the pool's most common label; None for a generative task."""
    most_common = Counter(e.label for e in task.pool).most_common(1)
    if not task.labels or not most_common:
        return None
    return sum(p.gold == most_common[0][0] for p in preds) / max(len(preds), 1)
