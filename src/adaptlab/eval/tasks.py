"""What an eval task is (source, prompt, kind, metric, shots) and the protocol it ran under.

A task's `build(protocol)` turns its data into `Sample`s whose `context` is the exact prompt text
(few-shot block included) and whose `meta` keeps the raw fields a route needs to build its own
context; the kind (see `kinds.py`) decides how the model is asked and scored. The registry of named
tasks is `catalog.py`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Kind = Literal["multiple_choice", "generate", "code", "classify", "extract"]


@dataclass(frozen=True)
class Protocol:
    """Everything that moves a score away from a published one; recorded beside every score."""
    shots: int
    chat_template: bool = False          # wrap the prompt in the tokenizer's chat template (training's template)
    extraction: Literal["strict", "flexible"] = "flexible"   # answer extraction for generate tasks
    average: Literal["micro", "macro"] = "micro"             # over items, or over groups (subjects/subtasks)
    limit: int | None = None             # items per task, stratified over groups
    seed: int = 0                        # for the stratified subset and for sampling
    samples: int = 1                     # completions per item (code: pass@k for every standard k <= samples)
    temperature: float = 0.0             # 0: greedy; > 0: sampled (needed when samples > 1)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.samples > 1 and self.temperature <= 0:
            raise ValueError(f"samples={self.samples} needs a temperature > 0: greedy decoding gives the same "
                             "completion every time (Chen et al. 2021 sample at 0.8 for pass@10 and pass@100)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sample:
    """One item, ready for the model."""
    id: str
    context: str                      # the prompt text the model sees
    target: Any                       # gold choice index | reference strings | test program
    choices: list[str] = field(default_factory=list)   # continuations scored (multiple_choice, classify)
    group: str = ""                   # subject / subtask, for macro averages
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """One evaluation task: where its data comes from, how it is prompted, asked and scored."""
    name: str
    source: str                                   # where the data comes from (builtin file, hub id, user file)
    kind: Kind
    metric: str                                   # primary metric (a key of kinds.METRICS)
    shots: int                                    # the standard number of exemplars
    build: Callable[[Protocol], list[Sample]]     # data + prompt -> samples
    description: str = ""
    license: str = ""
    stop: tuple[str, ...] = ()                    # generate/code: stop strings
    max_new_tokens: int = 256
    extract: str = "none"                         # generate: answer extractor (a key of kinds.EXTRACTORS)
    also: tuple[str, ...] = ()                    # generate: metrics reported beside the primary one
    average: Literal["micro", "macro"] = "micro"  # the standard averaging
    max_shots: int | None = None                  # most exemplars the data has (None: any)

    def protocol(self, shots: int | None = None, **overrides: Any) -> Protocol:
        """This task's standard protocol with the user's overrides (None means keep the default)."""
        shots = self.shots if shots is None else shots
        if self.max_shots is not None and shots > self.max_shots:
            raise ValueError(f"task {self.name!r} has at most {self.max_shots} exemplars, asked for {shots}")
        base = Protocol(shots=shots, average=self.average)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def select(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """At most `limit` samples, spread evenly over groups (round-robin over seeded shuffles), in data order."""
    if limit is None or limit >= len(samples):
        return samples
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_group.setdefault(s.group, []).append(i)
    queues = [rng.sample(ix, len(ix)) for ix in by_group.values()]
    picked: list[int] = []
    while len(picked) < limit:
        for q in queues:
            if q and len(picked) < limit:
                picked.append(q.pop())
    return [samples[i] for i in sorted(picked)]
