"""The model a server answers with: one base in memory, the adapters registered at start, and the lanes
(groups of rows that can share one forward pass) each request's rows decode in.

Model names follow OpenAI's `model` field: `BASE_NAME` runs the base, `BASE_NAME:ADAPTER` one adapter.
The base and every LoRA, DoRA and IA3 adapter share one lane: `serve.batched.RowAdapters` runs each row
of the batch with its own adapter in one forward pass. An adapter it does not cover (e.g. one that
adapts the embeddings) decodes through peft in a lane of its own (the lanes run one after another every
step; the base stays one copy in memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.methods.artifact import resolve_artifact
from adaptlab.methods.multi import BASE, AdapterSet
from adaptlab.models import load_model
from adaptlab.serve.batched import RowAdapters

MIXED = "__mixed__"   # the lane of the base and every adapter `RowAdapters` covers


class UnknownModel(LookupError):
    """A request named a model or adapter that was not registered at start."""


@dataclass
class Backend:
    name: str
    model: object
    tokenizer: object
    adapters: AdapterSet
    rows: RowAdapters | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.adapters.model is not None:
            self.rows = RowAdapters(self.adapters.model)

    @property
    def model_names(self) -> list[str]:
        return [self.name] + [f"{self.name}:{a}" for a in self.adapters.names]

    def resolve(self, model: str) -> str:
        """The adapter a request's `model` field names (BASE for the bare base); unknown names raise."""
        if model == self.name:
            return BASE
        base, _, adapter = model.partition(":")
        if base == self.name and adapter in self.adapters.names:
            return adapter
        raise UnknownModel(f"the model {model!r} does not exist; served models: {', '.join(self.model_names)}")

    def lane_of(self, adapter: str) -> str:
        """Key of the lane an adapter's rows decode in."""
        if self.rows is None or self.rows.covers(adapter):
            return MIXED
        return adapter

    def forward_for(self, lane: str):
        """The forward function of a lane: (adapter per row, **inputs) -> model output."""
        if self.rows is None:
            return lambda names, **inputs: self.model(**inputs)
        if lane == MIXED:
            return self.rows

        def single(names: list[str], **inputs):
            with self.adapters.active(lane) as model:
                return model(**inputs)
        return single


def load_backend(model: str, adapters: dict[str, str | Path], dtype: str = "auto", device: str = "auto",
                 name: str | None = None) -> Backend:
    """Load the base once and register each adapter (name -> peft adapter folder or run folder) on it."""
    loaded = load_model(model, dtype=dtype, device=device)
    adapter_set = AdapterSet(loaded.model)
    for adapter, path in adapters.items():
        if ":" in adapter or not adapter:
            raise ValueError(f"adapter name {adapter!r}: use a non-empty name without ':'")
        try:
            adapter_set.load(adapter, resolve_artifact(path))
        except ValueError as e:
            raise ValueError(f"adapter {adapter!r} at {path}: {e}") from e
    served = adapter_set.model if adapter_set.model is not None else loaded.model
    return Backend(name=name or Path(model).name, model=served, tokenizer=loaded.tokenizer, adapters=adapter_set)
