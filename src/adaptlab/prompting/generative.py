"""Generative tasks to prompt for: GSM8K (step by step), SQuAD-style reading comprehension, or a local
file of {instruction, input?, output} rows, answered by greedy generation and scored by the task's metric.

Like a classification task, each splits its records into the items it is scored on and a disjoint pool of
demonstrations; an item's `text` is the input the spec renders and its `label` the demonstration answer
(its reference for scoring when the item carries no list of references). The one eval path scores them:
kind `generate`, the task's extractor (`number` for GSM8K, `short` otherwise) and metric.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from adaptlab.data.builtin import read_rows
from adaptlab.data.records import Classification, Instruction
from adaptlab.eval.tasks import Sample, Task
from adaptlab.prompting.spec import PromptSpec, Sections

POOL_SIZE = 64        # demonstrations kept apart from the scored items


@dataclass(frozen=True)
class Item:
    """One input with its demonstration answer (`label`) and the references it is scored against."""

    text: str
    label: str
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerateTask:
    """Items to answer, a disjoint pool of demonstrations, a default prompt, and how answers are scored."""

    name: str
    items: list[Item]
    pool: list[Item]
    spec: PromptSpec
    metric: str = "exact_match"          # a key of eval.kinds.METRICS
    extract: str = "short"               # a key of eval.kinds.EXTRACTORS
    also: tuple[str, ...] = ("f1",)
    max_new_tokens: int = 48
    labels: list[str] = field(default_factory=list)   # none: the answers are free text
    mode: str = "generate"

    def eval_task(self, spec: PromptSpec, items: Sequence[Item], mode: str, max_new_tokens: int | None = None) -> Task:
        """The items as a `generate` eval task; the spec only shapes the context (see `run.spec_context`)."""
        if mode != "generate":
            raise ValueError(f"task {self.name!r} is generative: its answers are free text, read with --mode generate")
        samples = [Sample(f"{self.name}/{i}", it.text, list(it.references or (it.label,)),
                          meta={"text": it.text, "label": it.label}) for i, it in enumerate(items)]
        return Task(self.name, "prompting", "generate", self.metric, spec.shots, lambda _: samples,
                    extract=self.extract, also=self.also, max_new_tokens=self.max_new_tokens)


GSM8K_SPEC = PromptSpec(
    role="You are a careful math tutor who solves grade-school word problems.",
    instruction="Solve the math word problem.",
    output_format="End with the line: The answer is <number>.",
    steps=["Let's think step by step.", "Write each calculation on its own line.",
           "Finish with: The answer is <number>."],
    delimiters=('"""', '"""'),
    structure=Sections(),
)

QA_SPEC = PromptSpec(
    role="You are a precise assistant who answers questions about a text.",
    instruction="Answer the question using the text.",
    output_format="Answer with the shortest span of the text that answers it, nothing else.",
    steps=["Find the sentence of the text that answers the question.", "Copy the answer words from it."],
    delimiters=('"""', '"""'),
    structure=Sections(),
)


OUTPUT_SPEC = PromptSpec(
    role="You are a precise assistant.",
    instruction="Do what the input asks.",
    output_format="Answer with the answer only, on one line.",
    steps=["Read the input.", "Answer it in as few words as it allows."],
    delimiters=('"""', '"""'),
    structure=Sections(),
)


def gsm8k_solution(answer: str) -> str:
    """A GSM8K training solution as a demonstration: calculator marks <<...>> dropped, "#### N" as
    "The answer is N." (the line the `number` extractor reads)."""
    body, _, final = re.sub(r"<<[^>]*>>", "", answer).rpartition("####")
    return f"{body.strip()}\nThe answer is {final.strip()}."


def _gsm8k() -> GenerateTask:
    items = [Item(r["question"], str(r["final"]), (str(r["final"]),)) for r in read_rows("gsm8k/test.jsonl.gz")]
    pool = [Item(r["question"], gsm8k_solution(r["answer"])) for _, r in zip(range(POOL_SIZE),
                                                                              read_rows("gsm8k/train.jsonl.gz"))]
    return GenerateTask("gsm8k", items, pool, GSM8K_SPEC, metric="number_match", extract="number", also=(),
                        max_new_tokens=256)


def _squad() -> GenerateTask:
    paragraphs = {r["id"]: r["text"] for r in read_rows("squad/corpus.jsonl.gz")}
    rows = [Item(f"{paragraphs[r['paragraph_id']]}\n\nQuestion: {r['question']}", r["answers"][0],
                 tuple(r["answers"])) for r in read_rows("squad/dev.jsonl.gz")]
    return GenerateTask("squad", rows[POOL_SIZE:], rows[:POOL_SIZE], QA_SPEC)


GENERATE_TASKS: dict[str, Callable[[], GenerateTask]] = {"gsm8k": _gsm8k, "squad": _squad}


def instruction_text(r: Instruction) -> str:
    """An instruction record's input as one text: the instruction, then its input when it has one."""
    return "\n\n".join(part for part in (r.instruction, r.input) if part)


def task_from_pairs(name: str, items: Sequence[Classification], pool: Sequence[Classification],
                    spec: PromptSpec = OUTPUT_SPEC) -> GenerateTask:
    """A generative task over (input, output) pairs already split into items and pool, scored by exact match and F1."""
    return GenerateTask(name, [Item(c.text, c.label) for c in items], [Item(c.text, c.label) for c in pool], spec)
