"""The one evaluation path: every route (zero-/few-shot prompt, RAG, base/adapter/merged model) is scored here.

Public API:

    evaluate_task(model, tokenizer, task, protocol, context_builder=None, *, log_samples=False,
                  progress=None, batch_size=None) -> TaskResult
    evaluate(model, tokenizer, ["mmlu", "my-task.yaml"], shots=..., **protocol) -> {name: TaskResult | Exception}

The task owns the items, the kind (multiple_choice, classify, generate, code), the metric and the
aggregation; a route only changes which model answers (pass it as `model`) or how each sample's
context is built. A route supplies a `ContextBuilder`: a function from the selected `Sample`s (the
task's own prompt in `context`, the raw fields such as the question or text in `meta`) to the context
string each sample is asked with. `prompting.run.spec_context` (prompt spec + exemplars fixed/random/
similar through the chat template) and `rag.answer.sources_context` (retrieved sources) are builders;
`chat_context` wraps the task's own prompt in the chat template (`protocol.chat_template`).

`TaskResult` holds the primary score and every metric (percent, micro and macro), the protocol, the
timing, and `scored`: one `Scored` per sample (its metric values, output and extracted answer), so a
caller can compute bootstrap or binomial intervals from `per_sample()`; `to_dict()` is what the CLI
writes as JSON (with each sample's prompt and output when `log_samples`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from adaptlab.eval.catalog import get_task
from adaptlab.eval.kinds import KINDS, Scored
from adaptlab.eval.tasks import Protocol, Sample, Task, select

ProgressFactory = Callable[[str, int], Callable[[int], None]]   # (task name, total items) -> advance(n)
ContextBuilder = Callable[[Sequence[Sample]], list[str]]        # samples -> the context each is asked with


@dataclass
class TaskResult:
    task: str
    kind: str
    metric: str
    score: float                         # the primary metric under the protocol's averaging, in percent
    metrics: dict[str, float]            # every metric, micro and macro, in percent
    protocol: Protocol
    n: int
    seconds: float
    groups: dict[str, float] = field(default_factory=dict)    # per-group primary metric, in percent
    samples: list[dict] | None = None
    extra: dict = field(default_factory=dict)
    scored: list[Scored] = field(default_factory=list, repr=False)   # one per sample, in item order

    def per_sample(self, metric: str | None = None) -> list[float]:
        """Each sample's value of `metric` (default: the primary one), in [0, 1], for intervals and paired tests."""
        return [s.scores[metric or self.metric] for s in self.scored]

    @property
    def items_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        out = {"task": self.task, "kind": self.kind, "metric": self.metric, "score": self.score,
               "metrics": self.metrics, "protocol": self.protocol.to_dict(), "n": self.n,
               "seconds": round(self.seconds, 3), "items_per_s": round(self.items_per_s, 3), **self.extra}
        if self.groups:
            out["groups"] = self.groups
        if self.samples is not None:
            out["samples"] = self.samples
        return out


def chat_context(tokenizer) -> ContextBuilder:
    """Each sample's own prompt as one user turn of the tokenizer's chat template, ready for the answer."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_template=True but the tokenizer has no chat template")
    return lambda samples: [tokenizer.apply_chat_template([{"role": "user", "content": s.context}], tokenize=False,
                                                          add_generation_prompt=True) for s in samples]


def aggregate(scored: list[Scored]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Micro (mean over items) and macro (mean over groups' means) of every metric, in percent."""
    names = sorted({k for s in scored for k in s.scores})
    by_group: dict[str, list[Scored]] = {}
    for s in scored:
        by_group.setdefault(s.sample.group, []).append(s)
    per_group = {g: {m: 100 * sum(x.scores[m] for x in xs) / len(xs) for m in names} for g, xs in by_group.items()}
    out = {}
    for m in names:
        out[m] = 100 * sum(s.scores[m] for s in scored) / len(scored)
        if len(by_group) > 1:
            out[f"{m}_macro"] = sum(g[m] for g in per_group.values()) / len(per_group)
    return out, per_group


def evaluate_task(model, tokenizer, task: Task, protocol: Protocol, context_builder: ContextBuilder | None = None,
                  *, log_samples: bool = False, progress: ProgressFactory | None = None,
                  batch_size: int | None = None) -> TaskResult:
    """Select the task's items under the protocol, build each context (the route's builder, else the
    task's own prompt, in the chat template when the protocol says so), ask and score by the task's
    kind, aggregate."""
    samples: list[Sample] = select(task.build(protocol), protocol.limit, protocol.seed)
    if not samples:
        raise ValueError(f"task {task.name!r} has no items")
    build = context_builder or (chat_context(tokenizer) if protocol.chat_template else None)
    if build is not None:
        samples = [replace(s, context=c) for s, c in zip(samples, build(samples), strict=True)]
    advance = progress(task.name, len(samples)) if progress else None
    kwargs = {"batch_size": batch_size} if batch_size else {}
    start = time.perf_counter()
    scored = KINDS[task.kind](model, tokenizer, task, samples, protocol, advance, **kwargs)
    seconds = time.perf_counter() - start
    metrics, per_group = aggregate(scored)
    key = task.metric + ("_macro" if protocol.average == "macro" and f"{task.metric}_macro" in metrics else "")
    extra = {}
    if task.kind == "code" and scored:
        extra["sandbox"] = scored[0].extra.get("isolation", [])
    return TaskResult(
        task=task.name, kind=task.kind, metric=task.metric, score=metrics[key], metrics=metrics,
        protocol=protocol, n=len(samples), seconds=seconds,
        groups={g: v[task.metric] for g, v in per_group.items()} if len(per_group) > 1 else {},
        samples=[_sample_log(s) for s in scored] if log_samples else None, extra=extra, scored=scored)


def _sample_log(s: Scored) -> dict:
    return {"id": s.sample.id, "group": s.sample.group, "prompt": s.sample.context, "output": s.output,
            "answer": s.answer, "target": s.sample.target, "scores": s.scores,
            **{k: v for k, v in s.extra.items() if k != "isolation"}}


def evaluate(model, tokenizer, tasks: list[str], *, shots: int | None = None, log_samples: bool = False,
             progress: ProgressFactory | None = None, batch_size: int | None = None,
             **protocol: object) -> dict[str, TaskResult | Exception]:
    """Run each task (registry name or custom YAML path) under its standard protocol plus overrides.

    A task that cannot run here (e.g. its data needs the hub) gives its exception instead of a result,
    so a suite still reports the others; unknown names raise before anything runs."""
    resolved = [get_task(name) for name in tasks]
    out: dict[str, TaskResult | Exception] = {}
    for task in resolved:
        try:
            proto = task.protocol(shots=shots, **protocol)
            out[task.name] = evaluate_task(model, tokenizer, task, proto, log_samples=log_samples,
                                           progress=progress, batch_size=batch_size)
        except (RuntimeError, FileNotFoundError, ValueError) as e:
            out[task.name] = e
    return out
