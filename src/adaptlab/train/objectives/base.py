"""The objective contract and registry: SFT now; reward, DPO and RL plug in the same way.

An objective turns records into micro-batches and a micro-batch into a summed loss and the number of
items it sums over. The loop divides by the count over the whole optimizer step (all micro-batches,
all processes), so gradient accumulation and several processes give the same update as one big batch.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from adaptlab.data.records import Record
from adaptlab.registry import lookup

OBJECTIVES: dict[str, Any] = {}


class Objective(Protocol):
    name: str

    def batches(self, records: list[Record], tokenizer: PreTrainedTokenizerBase, cfg: Any) -> list[Any]:
        """Deterministic micro-batches (the loop shuffles their order per epoch)."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, int]:
        """(summed loss, number of items summed) for one micro-batch."""

    def size(self, batch: Any) -> int:
        """The count `loss` will return for this batch, known before the forward pass."""

    def tokens(self, batch: Any) -> int:
        """Real (non-pad) tokens in the batch, for throughput."""


def register(objective: Any) -> Any:
    OBJECTIVES[objective.name] = objective
    return objective


def get_objective(name: str) -> Objective:
    return lookup(OBJECTIVES, name, "objective")
