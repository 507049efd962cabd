"""Several adapters on one base model: load, switch per batch (or mix per row), unload.

A thin layer over peft's multi-adapter API (`load_adapter`, `set_adapter`, `delete_adapter`, and the
`adapter_names=` forward argument that routes each row of a batch to its own LoRA adapter). Serving and
`compare` use it to keep one copy of the base in memory for every adapter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peft import PeftModel
from torch import nn

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch
ADAPTER_CONFIG = "adapter_config.json"


class AdapterSet:
    """One frozen base and any number of named peft adapters over it."""

    def __init__(self, base: nn.Module):
        self.base = base
        self.model: PeftModel | None = None

    @property
    def names(self) -> list[str]:
        return [] if self.model is None else [n for n in self.model.peft_config if n != BASE]

    def load(self, name: str, path: str | Path) -> None:
        """Add the adapter stored at `path` (peft format, e.g. an adaptlab lora/dora/ia3/qlora artifact)."""
        if name == BASE or name in self.names:
            raise ValueError(f"adapter name {name!r} is taken; loaded: {self.names}")
        if not (Path(path) / ADAPTER_CONFIG).exists():
            raise ValueError(f"{path} holds no peft adapter ({ADAPTER_CONFIG} missing); full fine-tunes and merged "
                             "models are whole models, not adapters")
        if self.model is None:
            self.model = PeftModel.from_pretrained(self.base, str(path), adapter_name=name)
        else:
            self.model.load_adapter(str(path), adapter_name=name)
        self.model.eval()

    def use(self, name: str) -> None:
        """Make `name` the adapter every following forward pass runs with."""
        self._check(name)
        self.model.set_adapter(name)

    @contextmanager
    def active(self, name: str) -> Iterator[nn.Module]:
        """`with adapters.active("math") as model: ...`; `__base__` runs the base without any adapter."""
        if name == BASE:
            if self.model is None:
                yield self.base
                return
            with self.model.disable_adapter():
                yield self.model
            return
        previous = self.model.active_adapter if self.model is not None else None
        self.use(name)
        try:
            yield self.model
        finally:
            if previous is not None and previous in self.names:
                self.model.set_adapter(previous)

    def forward_mixed(self, adapter_names: list[str], **inputs):
        """One forward pass where row i of the batch runs with adapter_names[i] (LoRA-family adapters)."""
        for name in set(adapter_names) - {BASE}:
            self._check(name)
        return self.model(**inputs, adapter_names=adapter_names)

    def unload(self, name: str) -> None:
        """Remove one adapter and free its weights."""
        self._check(name)
        if len(self.names) == 1:
            self.base = self.model.unload()
            self.model = None
            return
        if self.model.active_adapter == name:
            self.model.set_adapter(next(n for n in self.names if n != name))
        self.model.delete_adapter(name)

    def _check(self, name: str) -> None:
        if name not in self.names:
            raise ValueError(f"no adapter named {name!r}; loaded: {self.names or 'none'}")
