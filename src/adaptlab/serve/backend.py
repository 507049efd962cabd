"""The model a server answers with: one base in memory, the adapters registered at start, and the lanes
(groups of rows that can share one forward pass) each request's rows decode in.

Model names follow OpenAI's `model` field: `BASE_NAME` runs the base, `BASE_NAME:ADAPTER` one adapter.
Plain LoRA adapters and the base share one lane: peft routes each row of the batch to its own adapter
(`adapter_names=`). peft cannot route rows for DoRA or IA3, so each such adapter decodes in a lane of
its own (the lanes run one after another every step; the base stays one copy in memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peft import PeftType

from adaptlab.methods.artifact import resolve_artifact
from adaptlab.methods.multi import BASE, AdapterSet
from adaptlab.models import load_model

MIXED = "__mixed__"   # the lane of the base and every plain LoRA adapter


class UnknownModel(LookupError):
    """A request named a model or adapter that was not registered at start."""


@dataclass
class Backend:
    name: str
    model: object
    tokenizer: object
    adapters: AdapterSet

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
        if self.adapters.model is None:
            return MIXED
        config = self.adapters.model.peft_config.get(adapter)
        if self._routable() and (adapter == BASE or not config.use_dora):
            return MIXED
        return adapter

    def forward_for(self, lane: str):
        """The forward function of a lane: (adapter per row, **inputs) -> model output."""
        if self.adapters.model is None:
            return lambda names, **inputs: self.model(**inputs)
        if lane == MIXED:
            return self.adapters.forward_mixed

        def single(names: list[str], **inputs):
            with self.adapters.active(lane) as model:
                return model(**inputs)
        return single

    def _routable(self) -> bool:
        return all(c.peft_type == PeftType.LORA for c in self.adapters.model.peft_config.values())


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
