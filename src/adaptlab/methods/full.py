"""Full fine-tuning: every weight is trained (the reference every cheaper method is measured against)."""

from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import AutoModelForCausalLM

from adaptlab.methods.base import Footprint, MethodConfig, count_footprint, register


class FullFineTune:
    name = "full"
    paper = "Howard & Ruder 2018, Universal Language Model Fine-tuning (ULMFiT), arXiv:1801.06146"
    description = "train every weight; update W <- W - lr * grad"

    def apply(self, model: nn.Module, cfg: MethodConfig) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        return model

    def save(self, model: nn.Module, path: Path) -> None:
        model.save_pretrained(path, safe_serialization=True)

    def load(self, base: nn.Module, path: Path) -> nn.Module:
        return AutoModelForCausalLM.from_pretrained(path, dtype=base.dtype).to(base.device)

    def footprint(self, model: nn.Module) -> Footprint:
        return count_footprint(model)


register(FullFineTune())
