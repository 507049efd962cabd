"""A user's own task from a YAML file: data file, prompt template, kind, metric; no code.

    name: capitals
    data: data/eval-capitals.jsonl      # .jsonl / .json / .csv, relative to the YAML file
    kind: generate                      # multiple_choice | generate | classify | code
    prompt: "Q: What is the capital of {country}?\\nA:"
    answer: capital                     # column with the reference (a string or a list of strings)
    metric: exact_match
    shots: 2                            # exemplars: the first rows, left out of scoring
    stop: ["\\n"]

multiple_choice names the column of choices (`choices: options`) and `answer` holds the index or the
text of the right choice; classify lists `labels` and `answer` holds the label.
"""

from __future__ import annotations

import csv
import json
import string
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adaptlab.eval.kinds import CHOICE_METRICS, EXTRACTORS, METRICS
from adaptlab.eval.tasks import Protocol, Sample, Task
from adaptlab.yamlfile import load_model


class CustomTaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    data: str
    kind: Literal["multiple_choice", "generate", "classify", "code"]
    prompt: str = Field(description="str.format template over the data's columns")
    answer: str = Field(description="column holding the reference / right choice / label / test program")
    metric: str = "exact_match"
    shots: int = Field(0, ge=0)
    choices: str | None = None            # multiple_choice: column holding the list of choices
    labels: list[str] | None = None       # classify: the label set
    target_delimiter: str = " "
    shot_separator: str = "\n\n"
    stop: list[str] = ["\n\n"]
    max_new_tokens: int = Field(128, gt=0)
    extract: str = "none"
    group: str | None = None              # column for macro averages
    license: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> CustomTaskSpec:
        if self.kind == "multiple_choice" and not self.choices:
            raise ValueError("field 'choices' (the column with the list of choices) is required for kind multiple_choice")
        if self.kind == "classify" and not self.labels:
            raise ValueError("field 'labels' (the label set) is required for kind classify")
        valid = {"multiple_choice": CHOICE_METRICS, "classify": CHOICE_METRICS, "code": ("pass@1",),
                 "generate": tuple(METRICS)}[self.kind]
        if self.metric not in valid:
            raise ValueError(f"field 'metric': {self.metric!r} is not valid for kind {self.kind}; "
                             f"choose one of: {', '.join(valid)}")
        if self.extract not in EXTRACTORS:
            raise ValueError(f"field 'extract': {self.extract!r}; choose one of: {', '.join(EXTRACTORS)}")
        return self


def _read_data(path: Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"custom task data file {path} does not exist (field 'data')")
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    if path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        return rows if isinstance(rows, list) else rows["data"]
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
    return rows


def _check_columns(spec: CustomTaskSpec, rows: list[dict], where: str) -> None:
    fields = {f for _, f, _, _ in string.Formatter().parse(spec.prompt) if f}
    needed = {"prompt": fields, "answer": {spec.answer}, "choices": {spec.choices} if spec.choices else set(),
              "group": {spec.group} if spec.group else set()}
    for n, row in enumerate(rows, 1):
        for name, cols in needed.items():
            missing = cols - row.keys()
            if missing:
                raise ValueError(f"{where}: field {name!r} uses column(s) {sorted(missing)} missing from data row {n} "
                                 f"(columns: {sorted(row)})")


def _answer_text(spec: CustomTaskSpec, row: dict) -> str:
    ans = row[spec.answer]
    if spec.kind == "multiple_choice" and isinstance(ans, int):
        return str(row[spec.choices][ans])
    return str(ans[0] if isinstance(ans, list) else ans)


def _target(spec: CustomTaskSpec, row: dict, n: int, where: str):
    ans = row[spec.answer]
    if spec.kind == "generate":
        return [str(a) for a in ans] if isinstance(ans, list) else [str(ans)]
    if spec.kind == "code":
        return str(ans)
    options = [str(o) for o in (row[spec.choices] if spec.kind == "multiple_choice" else spec.labels)]
    if isinstance(ans, int) or (isinstance(ans, str) and ans.isdigit() and spec.kind == "multiple_choice"
                                and str(ans) not in options):
        return int(ans)
    if str(ans) not in options:
        raise ValueError(f"{where}: row {n}: answer {ans!r} is not one of {options}")
    return options.index(str(ans))


def task_from_spec(spec: CustomTaskSpec, base_dir: Path, where: str) -> Task:
    data_path = (base_dir / spec.data).resolve()

    def build(p: Protocol) -> list[Sample]:
        rows = _read_data(data_path)
        _check_columns(spec, rows, where)
        if p.shots >= len(rows):
            raise ValueError(f"{where}: {p.shots} shots leave no rows to score ({len(rows)} rows)")
        prefix = "".join(spec.prompt.format(**r) + spec.target_delimiter + _answer_text(spec, r) + spec.shot_separator
                         for r in rows[: p.shots])
        samples = []
        for n, row in enumerate(rows[p.shots:], p.shots + 1):
            options = row[spec.choices] if spec.kind == "multiple_choice" else spec.labels or []
            samples.append(Sample(id=f"{spec.name}/{n}", context=prefix + spec.prompt.format(**row),
                                  target=_target(spec, row, n, where),
                                  choices=[f"{spec.target_delimiter}{o}" for o in options],
                                  group=str(row[spec.group]) if spec.group else ""))
        return samples

    return Task(name=spec.name, source=str(data_path), kind=spec.kind, metric=spec.metric, shots=spec.shots,
                build=build, description=spec.description, license=spec.license, stop=tuple(spec.stop),
                max_new_tokens=spec.max_new_tokens, extract=spec.extract)


def load_custom_task(path: str | Path) -> Task:
    """Read and validate a custom task YAML; errors name the file and the bad field."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"custom task file {path} does not exist")
    spec = load_model(path, CustomTaskSpec, what="custom task")
    return task_from_spec(spec, path.parent, str(path))
