"""What each adaptation method costs in memory, from the model's shape: one `MethodCost` per registered method.

    trainable  parameters the method trains (they and their gradients and optimizer states are fp32):
               lora / qlora / loftq   sum over target layers  r (in + out)                 (Hu et al. 2021)
               dora                   lora + out per target layer (the magnitude vector)  (Liu et al. 2024)
               ia3                    out of k_proj, v_proj; in of down_proj               (Liu et al. 2022)
               qalora                 sum over target layers  r (in / group + out)         (Xu et al. 2023)
               full                   every parameter
    base bytes the frozen weights: the compute dtype for lora / dora / ia3; NF4 with double quantization
               (4 + 8/64 + 32/(64*256) = 4.127 bits) for every linear and the embedding under qlora / loftq
               (`quant.nf4.bits_per_param`); qalora's group-wise INT-b with fp16 scale and zero per group of
               g inputs, b + 32/g bits. Norms stay in the compute dtype. Full fine-tuning keeps fp32 weights.
    optimizer  torch AdamW (two fp32 moments: 8 bytes per trainable parameter) except where the method brings
               its own: qlora / loftq use bitsandbytes' paged 8-bit AdamW on CUDA (2 bytes per parameter).
    extra      method-specific saved activations per token per layer (bytes) on top of the frozen-base table
               in `memplan.estimate`, found with `torch.autograd.graph.saved_tensors_hooks` on tiny Llamas
               (tests/test_plan.py checks the totals of every method against the hooks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adaptlab.memplan.shapes import Linear, ModelShape
from adaptlab.methods import METHODS
from adaptlab.methods.base import DEFAULT_TARGETS, MethodConfig
from adaptlab.methods.ia3 import FEEDFORWARD, IA3_TARGETS
from adaptlab.quant.nf4 import bits_per_param
from adaptlab.registry import lookup

ADAMW_BYTES = {"adamw": 8.0, "adamw8bit": 2.0, "paged_adamw8bit": 2.0}


def _targets(shape: ModelShape, cfg: MethodConfig):
    return [shape.linears[t] for t in cfg.target_modules if t in shape.linears]


def lora_params(shape: ModelShape, cfg: MethodConfig) -> int:
    return shape.layers * sum(cfg.r * (lin.in_features + lin.out_features) for lin in _targets(shape, cfg))


def dora_params(shape: ModelShape, cfg: MethodConfig) -> int:
    return lora_params(shape, cfg) + shape.layers * sum(lin.out_features for lin in _targets(shape, cfg))


def ia3_params(shape: ModelShape, cfg: MethodConfig) -> int:
    names = list(IA3_TARGETS) if cfg.target_modules == DEFAULT_TARGETS else cfg.target_modules
    lins = {n: shape.linears[n] for n in names if n in shape.linears}
    return shape.layers * sum(lin.in_features if n in FEEDFORWARD else lin.out_features for n, lin in lins.items())


def qalora_params(shape: ModelShape, cfg: MethodConfig) -> int:
    return shape.layers * sum(cfg.r * (lin.in_features // cfg.group_size + lin.out_features) for lin in _targets(shape, cfg))


def full_params(shape: ModelShape, cfg: MethodConfig) -> int:
    return shape.total_params


def _quantized_base(bits: Callable[[MethodConfig], float]) -> Callable[[ModelShape, MethodConfig, int], float]:
    """Base bytes when every linear and the input embedding are stored at `bits(cfg)` bits per weight."""
    def base(shape: ModelShape, cfg: MethodConfig, compute_bytes: int) -> float:
        low_bit = shape.linear_params + shape.embedding_params
        return low_bit * bits(cfg) / 8 + (shape.total_params - low_bit) * compute_bytes
    return base


def _dense_base(shape: ModelShape, cfg: MethodConfig, compute_bytes: int) -> float:
    return shape.total_params * compute_bytes


def _nf4_bits(cfg: MethodConfig) -> float:
    return bits_per_param(double_quant=cfg.double_quant)


def _loftq_bits(cfg: MethodConfig) -> float:
    return _nf4_bits(cfg) if cfg.bits == 4 else cfg.bits + 32 / cfg.group_size


@dataclass(frozen=True)
class MethodCost:
    name: str
    trainable: Callable[[ModelShape, MethodConfig], int]
    base_bytes: Callable[[ModelShape, MethodConfig, int], float]   # frozen weights; the int is the compute dtype's bytes
    cuda_optimizer: str = "adamw"                                 # what the method's own optimizer is on CUDA
    full: bool = False                                            # trains every weight (fp32 master copy)
    quantized: bool = False                                       # loads dense, then quantizes layer by layer
    extra_per_token: Callable[[ModelShape, MethodConfig, int], float] = lambda shape, cfg, compute: 0.0

    def optimizer(self, device_type: str) -> str:
        return self.cuda_optimizer if device_type == "cuda" else "adamw"


def _adapter_extra(per_target: Callable[[ModelShape, MethodConfig, Linear], float]):
    def extra(shape: ModelShape, cfg: MethodConfig, compute: int) -> float:
        return sum(per_target(shape, cfg, lin) for lin in _targets(shape, cfg))
    return extra


def _ia3_extra(shape: ModelShape, cfg: MethodConfig, compute: int) -> float:
    """IA3 keeps the unscaled outputs of the layers whose outputs it scales (k, v), fp32."""
    names = list(IA3_TARGETS) if cfg.target_modules == DEFAULT_TARGETS else cfg.target_modules
    return sum(4 * shape.linears[n].out_features for n in names if n in shape.linears and n not in FEEDFORWARD)


def _qalora_extra(shape: ModelShape, cfg: MethodConfig, compute: int) -> float:
    """QA-LoRA keeps only the group-pooled inputs (in / g) and A's output (r) per target; its quantized base
    keeps no input at all, so the projections' inputs (2 h + q + i) that a peft adapter keeps are not kept."""
    kept = sum(4 * (cfg.r + lin.in_features // cfg.group_size) for lin in _targets(shape, cfg))
    return kept - compute * (2 * shape.hidden + shape.q_dim + shape.intermediate)


# LoRA keeps A's output (r values, fp32) per target; DoRA also the fp32 output its magnitude rescales
_lora_extra = _adapter_extra(lambda shape, cfg, lin: 4 * cfg.r)
_dora_extra = _adapter_extra(lambda shape, cfg, lin: 4 * cfg.r + 4 * lin.out_features)

COSTS: dict[str, MethodCost] = {c.name: c for c in [
    MethodCost("full", full_params, lambda shape, cfg, cb: 4.0 * shape.total_params, full=True),
    MethodCost("lora", lora_params, _dense_base, extra_per_token=_lora_extra),
    MethodCost("dora", dora_params, _dense_base, extra_per_token=_dora_extra),
    MethodCost("ia3", ia3_params, _dense_base, extra_per_token=_ia3_extra),
    MethodCost("qlora", lora_params, _quantized_base(_nf4_bits), "paged_adamw8bit", quantized=True,
               extra_per_token=_lora_extra),
    MethodCost("loftq", lora_params, _quantized_base(_loftq_bits), "paged_adamw8bit", quantized=True,
               extra_per_token=_lora_extra),
    MethodCost("qalora", qalora_params, _quantized_base(lambda cfg: cfg.bits + 32 / cfg.group_size), quantized=True,
               extra_per_token=_qalora_extra),
]}


def method_cost(name: str) -> MethodCost:
    """The cost model of a registered method; a name outside the method registry lists the valid ones."""
    lookup(METHODS, name, "method")
    return lookup(COSTS, name, "method cost model")
