"""The method contract and registry: a method is one module here plus one `register(...)` call.

Every method turns a base model into a trainable one (`apply`), folds its update back (`merge`),
writes and reads its artifact (`save`/`load`) and reports what it costs (`footprint`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from adaptlab.registry import lookup

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class MethodConfig(BaseModel):
    """Settings shared by every method; a method reads only the fields it needs."""

    model_config = ConfigDict(extra="forbid")

    name: str = "lora"
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: float = Field(16.0, description="LoRA scale numerator: update = (alpha / r) * B A")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS))
    bits: int = Field(4, description="weight bits for quantized methods (qalora: 2, 3, 4 or 8)")
    group_size: int = Field(32, ge=1, description="qalora: input channels per quantization group")
    loftq_iters: int = Field(4, ge=1, description="loftq: alternating quantize/SVD steps")
    double_quant: bool = Field(True, description="qlora: quantize the absmax constants again (8-bit)")


@dataclass
class Footprint:
    """What a method costs: parameter counts and the bytes of the frozen base and the trainable part."""

    trainable_params: int
    total_params: int
    base_bytes: int
    trainable_bytes: int

    @property
    def trainable_share(self) -> float:
        return self.trainable_params / max(self.total_params, 1)

    @property
    def base_bytes_per_param(self) -> float:
        return self.base_bytes / max(self.total_params - self.trainable_params, 1)

    def as_dict(self) -> dict:
        return {**asdict(self), "trainable_share": self.trainable_share, "base_bytes_per_param": self.base_bytes_per_param}


@runtime_checkable
class Method(Protocol):
    name: str
    paper: str
    description: str

    def apply(self, model: nn.Module, cfg: MethodConfig) -> nn.Module: ...
    def merge(self, model: nn.Module) -> nn.Module: ...
    def save(self, model: nn.Module, path: Path) -> None: ...
    def load(self, base: nn.Module, path: Path) -> nn.Module: ...
    def footprint(self, model: nn.Module) -> Footprint: ...


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry under `method.name`."""
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method called `name`; an unknown name lists the valid ones."""
    return lookup(METHODS, name, "method")


def base_model_of(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def count_footprint(model: nn.Module) -> Footprint:
    """Count parameters and bytes. Packed low-bit buffers count as the weights they stand for."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trainable_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    frozen_params = [p for p in model.parameters() if not p.requires_grad]
    base_bytes = sum(p.numel() * p.element_size() for p in frozen_params)
    logical = sum(p.numel() for p in frozen_params)
    for module in model.modules():
        # quantized layers say how many weights their packed buffers hold and how many bytes they take
        if hasattr(module, "quantized_numel") and hasattr(module, "quantized_bytes"):
            logical += module.quantized_numel()
            base_bytes += module.quantized_bytes()
    return Footprint(trainable_params=trainable, total_params=trainable + logical,
                     base_bytes=base_bytes, trainable_bytes=trainable_bytes)


def check_targets(model: nn.Module, targets: list[str]) -> None:
    """Fail before training when a target module name matches no linear layer of the model."""
    present = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in targets if t not in present]
    if missing:
        raise ValueError(f"target modules {missing} are not linear layers of this model; "
                         f"available: {', '.join(sorted(present))}")


def check_rank(model: nn.Module, cfg: MethodConfig) -> None:
    """A rank above the smaller side of a target layer is an error, not a silent waste."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in cfg.target_modules:
            limit = min(m.in_features, m.out_features)
            if cfg.r > limit:
                raise ValueError(f"rank r={cfg.r} is larger than layer {name} allows ({m.in_features}x"
                                 f"{m.out_features}: r <= {limit})")


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
