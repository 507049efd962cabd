"""Data sets that ship inside the package (gzip JSONL, licenses beside them; see builtin/SOURCES.md).

`read_rows("gsm8k/test.jsonl.gz")` gives the raw rows of a vendored file; `BUILTIN_DATASETS` maps a
short name to a file, a license and the function that turns its rows into typed records.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from adaptlab.data.records import Classification, Instruction, MultipleChoice, Preference, Record, transcript_messages

BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_path(relpath: str) -> Path:
    """Path of a vendored file, e.g. `bbh/cot-prompts/navigate.txt`."""
    path = BUILTIN_DIR / relpath
    if not path.exists():
        raise FileNotFoundError(f"builtin file {relpath!r} is not in the package ({BUILTIN_DIR})")
    return path


def read_rows(relpath: str) -> Iterator[dict]:
    """Yield the JSON rows of a vendored (optionally gzipped) JSONL file."""
    path = builtin_path(relpath)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _hh(row: dict) -> Preference:
    """HH-RLHF stores the whole dialogue on each side; the prompt is the chosen side's turns before its last
    answer (as Anthropic and trl read it: a few rows' rejected sides diverge earlier, mid-answer)."""
    chosen = transcript_messages(row["chosen"])
    return Preference(prompt=chosen[:-1], chosen=chosen[-1]["content"],
                      rejected=transcript_messages(row["rejected"])[-1]["content"])


def _alpaca_seed(row: dict) -> Iterator[Instruction]:
    for inst in row["instances"]:
        yield Instruction(instruction=row["instruction"], input=inst.get("input", ""), output=inst["output"])


def _gsm8k(row: dict) -> Instruction:
    # the reference answer's calculator annotations <<48/2=24>> are not language: drop them
    return Instruction(instruction=row["question"], output=re.sub(r"<<[^>]*>>", "", row["answer"]))


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    file: str
    kind: str
    license: str
    source: str
    description: str
    mapper: Callable[[dict], Record | Iterator[Record]]

    def records(self) -> list[Record]:
        out: list[Record] = []
        for row in read_rows(self.file):
            mapped = self.mapper(row)
            out.extend(mapped if isinstance(mapped, Iterator) else [mapped])
        return out


_MMLU = lambda r: MultipleChoice(question=r["question"], choices=r["choices"], answer=int(r["answer"]))
BUILTIN_DATASETS: dict[str, BuiltinDataset] = {d.name: d for d in [
    BuiltinDataset("gsm8k", "gsm8k/train.jsonl.gz", "instruction", "MIT", "openai/grade-school-math",
                   "grade-school maths word problems with worked answers (train, 7,473)", _gsm8k),
    BuiltinDataset("gsm8k-test", "gsm8k/test.jsonl.gz", "instruction", "MIT", "openai/grade-school-math",
                   "GSM8K test split (1,319)", _gsm8k),
    BuiltinDataset("alpaca-seed", "alpaca/seed_tasks.jsonl.gz", "instruction", "CC BY-NC 4.0 (non-commercial)",
                   "tatsu-lab/stanford_alpaca", "Alpaca's 175 hand-written seed tasks with their instances", _alpaca_seed),
    BuiltinDataset("financial-phrasebank", "financial_phrasebank/allagree.jsonl.gz", "classification",
                   "CC BY-NC-SA 3.0 (non-commercial)", "Malo et al. 2014 (Aalto)",
                   "financial news sentences, sentiment negative/neutral/positive, 100% annotator agreement (2,264)",
                   lambda r: Classification(text=r["text"], label=r["label"])),
    BuiltinDataset("financial-phrasebank-50", "financial_phrasebank/50agree.jsonl.gz", "classification",
                   "CC BY-NC-SA 3.0 (non-commercial)", "Malo et al. 2014 (Aalto)",
                   "the same with >50% agreement (4,846)", lambda r: Classification(text=r["text"], label=r["label"])),
    BuiltinDataset("hh-rlhf-harmless", "hh_rlhf/harmless-base.test.jsonl.gz", "preference", "MIT",
                   "anthropics/hh-rlhf", "harmless-base test preference pairs (2,312)", _hh),
    BuiltinDataset("mmlu", "mmlu/test.jsonl.gz", "multiple_choice", "MIT", "hendrycks/test",
                   "MMLU test, 57 subjects (14,042)", _MMLU),
    BuiltinDataset("mmlu-dev", "mmlu/dev.jsonl.gz", "multiple_choice", "MIT", "hendrycks/test",
                   "MMLU dev, 5 exemplars per subject (285)", _MMLU),
    BuiltinDataset("nq-open", "nq_open/dev.jsonl.gz", "instruction", "CC BY-SA 3.0 (share-alike)",
                   "google-research-datasets/natural-questions", "NQ-open dev questions with answers (3,610)",
                   lambda r: Instruction(instruction=r["question"], output=r["answers"][0])),
    BuiltinDataset("squad", "squad/dev.jsonl.gz", "instruction", "CC BY-SA 4.0 (share-alike)",
                   "rajpurkar/SQuAD-explorer", "SQuAD v1.1 dev questions (10,570); corpus in squad/corpus.jsonl.gz",
                   lambda r: Instruction(instruction=r["question"], output=r["answers"][0])),
]}
