"""The compare task on disk: a train split, a test split that never overlaps it, and eval tasks over them.

Without a test file, `test_size` rows are carved out of the data with a fixed seed (the report says
so); a given test file that shares any text with the training data is refused. The splits are
written as plain files: training rows as instruction records (the prompt the model is scored on, the
label as answer), scored rows as custom eval tasks (`eval/custom.py` YAML), so `adaptlab eval
--tasks <run>/data/test.yaml --chat-template --adapter <cell>/final` reproduces any cell's score. Beside them: `rewards.jsonl` (each training prompt with its gold answer and
the labels, what the rloo routes' `task:` reward scores against) and, where the task has preferences, the
dpo routes' pair file (the user's, or `preferences.jsonl` derived from the labels when asked).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

from adaptlab.atomic import write_jsonl
from adaptlab.compare.recipe import TaskSpec
from adaptlab.data.records import Classification
from adaptlab.data.sources import load_records

log = logging.getLogger(__name__)

SPLIT_SEED = 1234      # the carved test split is the same for every training seed


@dataclass
class TaskFiles:
    train: Path                 # instruction JSONL for `data.train`
    test: Path                  # eval task YAML over the test split (zero-shot)
    train_eval: Path | None     # eval task YAML over a slice of the training split (over-fitting gap)
    n_train: int
    n_test: int
    carved: bool                # the test split was carved out of the data
    rewards: Path | None = None         # {prompt, answer, choices} per training row: the `task:` reward's references
    preferences: str | None = None      # dpo routes' pairs (a file or builtin name), when the task has them
    corpus: list[str] | None = None     # the rag routes' folders and files, resolved

    def shots(self, k: int) -> Path:
        """The eval task YAML whose prompts carry `k` exemplars from the training split."""
        return self.test if k == 0 else self.test.with_name(f"test-{k}shot.yaml")


def _classification(source: str, spec: TaskSpec) -> list[Classification]:
    records = load_records(source, kind="classification")
    unknown = sorted({r.label for r in records} - set(spec.labels))
    if unknown:
        raise ValueError(f"{source}: labels {unknown} are not in task.labels {spec.labels}")
    seen: set[str] = set()
    return [r for r in records if not (r.text in seen or seen.add(r.text))]   # duplicates would leak


def split(spec: TaskSpec) -> tuple[list[Classification], list[Classification], bool]:
    """(train, test, carved): the test split is given, or carved out with a fixed seed."""
    data = _classification(spec.data, spec)
    if spec.test:
        test = _classification(spec.test, spec)
        shared = {r.text for r in data} & {r.text for r in test}
        if shared:
            raise ValueError(f"task.test {spec.test}: {len(shared)} test rows also appear in the training data "
                             f"{spec.data} (e.g. {min(shared)[:60]!r}); a test split must be unseen")
        train = data
    else:
        if len(data) < spec.test_size + len(spec.labels):
            raise ValueError(f"task.data {spec.data}: {len(data)} rows cannot give a test split of "
                             f"{spec.test_size} (task.test_size) and a training split")
        order = random.Random(SPLIT_SEED).sample(range(len(data)), len(data))
        test = [data[i] for i in order[: spec.test_size]]
        train = [data[i] for i in order[spec.test_size:]]
    return train[: spec.train_limit] if spec.train_limit else train, test, not spec.test


def exemplars(train: list[Classification], labels: list[str], k: int) -> list[Classification]:
    """`k` training rows, labels taken in turn, so a few-shot prompt shows every class."""
    pools = [pool for lab in labels if (pool := [r for r in train if r.label == lab])]
    return [pools[i % len(pools)][(i // len(pools)) % len(pools[i % len(pools)])] for i in range(k)]


def _task_yaml(path: Path, spec: TaskSpec, data: Path, name: str, shots: int = 0) -> Path:
    prompt = spec.prompt.replace("{choices}", ", ".join(spec.labels))
    task = {"name": name, "data": data.name, "kind": "classify", "prompt": prompt, "answer": "label",
            "labels": spec.labels, "metric": "acc", "shots": shots, "target_delimiter": "",
            "description": f"{spec.name}: {data.stem} split written by adaptlab compare"}
    path.write_text(yaml.safe_dump(task, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def derived_pairs(train: list[Classification], labels: list[str], prompt: str) -> list[dict]:
    """One pair per training row: chosen = its gold label, rejected = another label drawn with a fixed seed."""
    rng = random.Random(SPLIT_SEED)
    return [{"prompt": prompt.format(text=r.text), "chosen": r.label,
             "rejected": rng.choice([lab for lab in labels if lab != r.label])} for r in train]


def _preferences(spec: TaskSpec, train: list[Classification], prompt: str, out: Path) -> str | None:
    if spec.preferences:
        pairs = load_records(spec.preferences, kind="preference")     # bad rows fail here, naming file and line
        log.info("task.preferences %s: %d pairs", spec.preferences, len(pairs))
        return spec.preferences
    if spec.preferences_from_labels:
        write_jsonl(out / "preferences.jsonl", derived_pairs(train, spec.labels, prompt))
        return str(out / "preferences.jsonl")
    return None


def corpus_paths(spec: TaskSpec) -> list[str] | None:
    """`task.corpus` resolved; a path that does not exist is an error naming the field."""
    if not spec.corpus:
        return None
    missing = [c for c in spec.corpus if not Path(c).expanduser().exists()]
    if missing:
        raise FileNotFoundError(f"task.corpus: {', '.join(missing)} does not exist (give folders or files of "
                                ".txt .md .html .pdf documents)")
    return [str(Path(c).expanduser().resolve()) for c in spec.corpus]


def write_task(spec: TaskSpec, shots: list[int], train_eval: int, out: Path) -> TaskFiles:
    """Split the task and write its files under `out`; `shots` lists the few-shot k the routes use."""
    corpus = corpus_paths(spec)
    train, test, carved = split(spec)
    out.mkdir(parents=True, exist_ok=True)
    prompt = spec.prompt.replace("{choices}", ", ".join(spec.labels))
    rows = lambda recs: [{"text": r.text, "label": r.label} for r in recs]
    write_jsonl(out / "train.jsonl", [{"instruction": prompt.format(text=r.text), "output": r.label} for r in train])
    write_jsonl(out / "test.jsonl", rows(test))
    write_jsonl(out / "rewards.jsonl", [{"prompt": prompt.format(text=r.text), "answer": r.label,
                                          "choices": spec.labels} for r in train])
    files = TaskFiles(out / "train.jsonl", _task_yaml(out / "test.yaml", spec, out / "test.jsonl", spec.name),
                      None, len(train), len(test), carved, out / "rewards.jsonl", _preferences(spec, train, prompt, out),
                      corpus)
    for k in sorted({k for k in shots if k > 0}):
        write_jsonl(out / f"test-{k}shot.jsonl", rows(exemplars(train, spec.labels, k) + test))
        _task_yaml(files.shots(k), spec, out / f"test-{k}shot.jsonl", spec.name, shots=k)
    if train_eval:
        picked = random.Random(SPLIT_SEED).sample(train, min(train_eval, len(train)))
        write_jsonl(out / "train-eval.jsonl", rows(picked))
        files.train_eval = _task_yaml(out / "train-eval.yaml", spec, out / "train-eval.jsonl", f"{spec.name}-train")
    return files
