"""Tasks to prompt for: the eval registry's `classify` tasks (e.g. `sentiment`), the builtin
classification data sets, the generative tasks (`generative.GENERATE_TASKS`: gsm8k, squad), or a local
file of {text, label} rows (classification) or {instruction, input?, output} rows (generative).

Each task splits its records once, with a fixed seed, into the items it is scored on and a disjoint
pool that exemplars are drawn from, so no item is ever shown as its own demonstration. An eval task
brings its data and label set; the prompt comes from a PromptSpec (`TASK_SPECS`, else `GENERIC_SPEC`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from adaptlab.data.builtin import BUILTIN_DATASETS
from adaptlab.data.records import Classification, Instruction
from adaptlab.data.sources import LOCAL_FORMATS, load_records
from adaptlab.eval.catalog import TASKS, get_task
from adaptlab.eval.tasks import Protocol
from adaptlab.prompting.generative import GENERATE_TASKS, instruction_text, task_from_pairs
from adaptlab.prompting.run import ClassifyTask, PromptTask
from adaptlab.prompting.spec import PromptSpec, Sections
from adaptlab.registry import UnknownNameError

SPLIT_SEED = 0
POOL_FRACTION = 0.2

GENERIC_SPEC = PromptSpec(
    role="You are a careful annotator who labels texts.",
    instruction="Classify the text as one of: {labels}.",
    output_format="Answer with the label only, one of: {labels}.",
    steps=["Read the text.", "Decide which label fits it best.", "Answer with that label."],
    delimiters=('"""', '"""'),
    structure=Sections(),
)

SENTIMENT_SPEC = PromptSpec(
    role="You are a financial analyst who reads news about companies.",
    instruction="Classify the sentiment of the financial news sentence as one of: {labels}.",
    output_format="Answer with one word: {labels}.",
    steps=["Find what the sentence says about the company.",
           "Decide whether that is good news, bad news or neither for its investors.",
           "Answer positive for good news, negative for bad news, neutral otherwise."],
    delimiters=('"""', '"""'),
    structure=Sections(),
)


def split_pool(records: Sequence[Classification], pool_fraction: float = POOL_FRACTION,
               seed: int = SPLIT_SEED) -> tuple[list[Classification], list[Classification]]:
    """(items, pool): a seeded shuffle, the first `pool_fraction` of it kept for exemplars.

    A text that occurs twice is kept once (the first), so it cannot be both an item and an exemplar."""
    first: dict[str, Classification] = {}
    for r in records:
        first.setdefault(r.text, r)
    order = list(first.values())
    random.Random(seed).shuffle(order)
    cut = max(1, round(len(order) * pool_fraction))
    return order[cut:], order[:cut]


def task_from_records(name: str, records: Sequence[Classification], spec: PromptSpec = GENERIC_SPEC,
                      labels: Sequence[str] | None = None) -> ClassifyTask:
    """A task over the user's own records; the labels default to those the records use, sorted."""
    if not records:
        raise ValueError(f"task {name!r} has no records")
    items, pool = split_pool(records)
    return ClassifyTask(name, items, pool, list(labels or sorted({r.label for r in records})), spec)


def _from_eval(name: str) -> ClassifyTask | None:
    """The eval registry's task `name` as a ClassifyTask (its samples carry the raw text and label)."""
    try:
        task = get_task(name)
    except UnknownNameError:
        return None
    if task.kind != "classify":
        raise ValueError(f"task {name!r} is a {task.kind} task; prompting runs the tasks: "
                         f"{', '.join(prompt_task_names())}")
    samples = task.build(Protocol(shots=0))
    if not samples or not all({"text", "label"} <= set(s.meta) for s in samples):
        raise ValueError(f"eval task {name!r} does not record each item's text and label in Sample.meta")
    records = [Classification(s.meta["text"], s.meta["label"]) for s in samples]
    return task_from_records(name, records, TASK_SPECS.get(name, GENERIC_SPEC),
                             [c.strip() for c in samples[0].choices])


def _eval_classify_tasks() -> list[str]:
    return [name for name, t in TASKS.items() if t.kind == "classify"]


TASK_SPECS: dict[str, PromptSpec] = {"sentiment": SENTIMENT_SPEC}
CLASSIFICATION_DATASETS = [name for name, d in BUILTIN_DATASETS.items() if d.kind == "classification"]


def prompt_task_names() -> list[str]:
    """Every task name `load_task` accepts (files of {text, label} rows aside)."""
    return _eval_classify_tasks() + CLASSIFICATION_DATASETS + list(GENERATE_TASKS)


def task_from_file(path: Path) -> PromptTask:
    """{text, label} rows as a classification task, {instruction, input?, output} rows as a generative one."""
    records = load_records(str(path))
    if all(isinstance(r, Classification) for r in records):
        return task_from_records(path.stem, records)
    if all(isinstance(r, Instruction) for r in records):
        return task_from_pairs(path.stem, *split_pool([Classification(instruction_text(r), r.output)
                                                       for r in records]))
    raise ValueError(f"{path}: prompting needs rows of {{text, label}} or of {{instruction, input?, output}}, "
                     f"not a mix of {sorted({type(r).__name__ for r in records})}")


def load_task(name: str) -> PromptTask:
    """A task by name, or from a local file; an unknown name lists the valid ones."""
    path = Path(name)
    if path.suffix in LOCAL_FORMATS and path.exists():
        return task_from_file(path)
    if name in GENERATE_TASKS:
        return GENERATE_TASKS[name]()
    if name in CLASSIFICATION_DATASETS:
        return task_from_records(name, BUILTIN_DATASETS[name].records(), TASK_SPECS.get(name, GENERIC_SPEC))
    task = _from_eval(name)
    if task is None:
        raise ValueError(f"unknown task {name!r}; prompt tasks: {', '.join(prompt_task_names())}, "
                         f"or a {'/'.join(LOCAL_FORMATS)} file of {{text, label}} or {{instruction, output}} rows")
    return task
