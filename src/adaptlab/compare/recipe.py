"""The compare recipe: one task, the routes to try on it, seeds and the time budget.

    model: smollm2-135m
    task: {data: financial-phrasebank, labels: [negative, neutral, positive], test_size: 150}
    routes:
      - {name: zero-shot}
      - {name: few-shot, shots: 3}
      - {name: lora, method: {name: lora, r: 8}}
      - {name: rag, rag: {k: 2}}                                      # needs task.corpus
      - {name: dpo, method: {name: lora, r: 8}, objective: dpo}       # needs task.preferences
      - {name: rloo, method: {name: lora, r: 8}, objective: rloo}     # reward: the task's metric
    budget: 20m
    budgets: {quick: 5m}        # named budgets for `--budget quick`

Every training route starts from `train` (any `TrainConfig` key) and overrides it with its own keys.
A route's kind follows from its keys: `rag` retrieves from `task.corpus`, `method` trains (with `objective`
sft, dpo or rloo: `compare/routes.py`), neither prompts the base model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from adaptlab.config import Strict, load_config
from adaptlab.rag.embed import DEFAULT_EMBEDDER

DEFAULT_PROMPT = "Sentence: {text}\nSentiment ({choices}):"


class TaskSpec(Strict):
    data: str = Field("financial-phrasebank", description="builtin name or a .jsonl/.json/.csv file of {text, label}")
    test: str | None = Field(None, description="test file; default: carve `test_size` rows out of `data` (seeded)")
    test_size: int = Field(150, ge=10, description="rows carved out for the test split when `test` is not given")
    train_limit: int | None = Field(None, ge=1, description="use at most this many training rows")
    labels: list[str] = Field(default_factory=lambda: ["negative", "neutral", "positive"], min_length=2)
    prompt: str = Field(DEFAULT_PROMPT, description="str.format template over {text} and {choices}")
    name: str = "task"
    corpus: list[str] | None = Field(None, description="folders or files (.txt .md .html .pdf) the rag routes "
                                     "retrieve from")
    preferences: str | None = Field(None, description="a preference file ({prompt, chosen, rejected} rows) for the "
                                    "dpo routes")
    preferences_from_labels: bool = Field(False, description="derive dpo pairs from the labelled training split: "
                                          "chosen = the gold label, rejected = a seeded wrong label")

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_preference_source(self) -> TaskSpec:
        if self.preferences and self.preferences_from_labels:
            raise ValueError("give task.preferences (a file) or task.preferences_from_labels: true, not both")
        return self


class RagSpec(Strict):
    """Retriever settings of a rag route (the store is built from `task.corpus` under the run folder)."""
    k: int = Field(2, ge=1, description="chunks retrieved per item (dense + BM25, fused by RRF)")
    chunk_size: int = Field(200, gt=0, description="tokens per chunk")
    overlap: int = Field(40, ge=0, description="tokens shared by neighbouring chunks")
    embedder: str = DEFAULT_EMBEDDER
    style: str = Field("cite", description="prompt style of rag.answer.STYLES the sources are sent in")


class RouteSpec(Strict):
    name: str = Field(description="the row's name in the report, e.g. zero-shot, few-shot-3, lora")
    shots: int = Field(0, ge=0, description="prompting routes: exemplars from the training split")
    method: dict[str, Any] | None = Field(None, description="training routes: the method section (name, r, ...)")
    objective: str = Field("sft", description="training routes: sft, dpo or rloo (compare/routes.py)")
    rag: RagSpec | None = Field(None, description="a retrieval route over task.corpus")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys for this route only")

    @model_validator(mode="after")
    def _one_kind(self) -> RouteSpec:
        if self.rag and (self.method or self.shots):
            raise ValueError(f"route {self.name}: a rag route takes no method and no shots")
        if self.objective != "sft" and not self.method:
            raise ValueError(f"route {self.name}: objective {self.objective} trains: give a method (e.g. lora)")
        return self

    @property
    def trains(self) -> bool:
        return self.method is not None

    @property
    def kind(self) -> str:
        return "rag" if self.rag else "train" if self.trains else "prompt"


class MeasureSpec(Strict):
    eval_limit: int | None = Field(None, ge=1, description="test items scored per cell (default: the whole split)")
    train_eval: int = Field(60, ge=0, description="training rows scored for the train/test gap (over-fitting)")
    curve_points: int = Field(3, ge=0, description="test-metric points over training steps")
    curve_items: int = Field(40, ge=1, description="test items per curve point")
    mmlu_items: int = Field(57, ge=0, description="fixed MMLU slice (stratified over subjects) for forgetting")
    text_passages: int = Field(16, ge=0, description="general-text passages (Alpaca seed) whose cross-entropy "
                               "measures forgetting")


class CompareConfig(Strict):
    model: str = "smollm2-135m"
    task: TaskSpec = Field(default_factory=TaskSpec)
    routes: list[RouteSpec] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    budget: str = Field("20m", description="wall time for the whole matrix: 90s, 20m, 1h or a name in `budgets`")
    budgets: dict[str, str] = Field(default_factory=lambda: {"quick": "5m"})
    share: Literal["time", "tokens"] = Field("time", description="equal wall-clock share per training route, or "
                                             "the same number of training tokens")
    warmup_steps: int = Field(2, ge=1, description="timed steps per training route in the warm-up")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys shared by training routes")
    measure: MeasureSpec = Field(default_factory=MeasureSpec)
    output_dir: str = "runs/compare"

    @model_validator(mode="after")
    def _unique_routes(self) -> CompareConfig:
        names = [r.name for r in self.routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"route names must be unique; repeated: {', '.join(dupes)}")
        return self


def load_recipe(path: str | Path | None, overrides: list[str] = ()) -> CompareConfig:
    """Read a compare recipe; errors name the file and the field (see `config.load_config`)."""
    return load_config(path, overrides, schema=CompareConfig)
