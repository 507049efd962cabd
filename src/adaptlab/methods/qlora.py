"""QLoRA: LoRA over a frozen base stored as 4-bit NormalFloat with double quantization.

Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", arXiv:2305.14314:

    Y = X doubleDequant(c1, c2, W_NF4) + s X L1 L2        (s = alpha / r; L1 = A^T, L2 = B^T in LoRA terms)

Every nn.Linear of the model (and the input embedding with its tied lm_head, so the whole frozen base is
~4.13 bits per parameter) is stored as NF4 with absmax blocks of 64 and 8-bit double-quantized constants
(`adaptlab.quant.nf4`); compute runs in the model's dtype (bf16 where the device has it); peft's LoRA
layers wrap the quantized linears. The NF4 storage is bitsandbytes' own layout, and its dequantization
kernel is used where bitsandbytes is installed (on CPU it is faster than `bnb.nn.Linear4bit`'s fp32
compute path that peft's QLoRA recipe uses, see benchmarks/methods.py), plain torch elsewhere.

Optimizer: paged AdamW 8-bit from bitsandbytes on CUDA; on CPU torch's AdamW (bitsandbytes' paged
optimizers page GPU memory to the host, which has no meaning on a CPU) -- logged, never silent.

Merge = dequantize every layer to the compute dtype, then fold s B A into it (peft's merge).
Save = the LoRA adapter in peft's format; load = quantize the same base the same way, then attach it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model
from peft.tuners.lora import Linear as LoraLinear
from torch import nn

from adaptlab.methods.base import MethodConfig, base_model_of, check_rank, check_targets, register
from adaptlab.methods.lora import LoRA
from adaptlab.quant.layers import Quantizer, QuantLinear, dequantize_model, quantize_model
from adaptlab.quant.nf4 import quantize_nf4

log = logging.getLogger(__name__)


def make_optimizer(params: Iterable[nn.Parameter], lr: float, betas=(0.9, 0.999), weight_decay: float = 0.0,
                   device: torch.device | None = None) -> torch.optim.Optimizer:
    """Paged AdamW 8-bit (bitsandbytes) on CUDA; torch AdamW elsewhere. Logs which one runs."""
    params = list(params)
    device = device or params[0].device
    if device.type == "cuda":
        try:
            import bitsandbytes as bnb
        except ImportError:
            log.warning("optimizer: torch AdamW (bitsandbytes is not installed, so no paged 8-bit AdamW)")
        else:
            log.info("optimizer: bitsandbytes PagedAdamW8bit")
            return bnb.optim.PagedAdamW8bit(params, lr=lr, betas=betas, weight_decay=weight_decay)
    else:
        log.info("optimizer: torch AdamW with fp32 states (paged 8-bit AdamW is CUDA-only; running on %s)", device.type)
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)


class QuantLoraLinear(LoraLinear):
    """peft's LoRA layer over a `QuantLinear`. peft merges by adding into `base_layer.weight`, which a quantized
    base only offers as a copy: refuse, rather than silently drop the update (`QLoRA.merge` dequantizes first)."""

    def merge(self, *args, **kwargs) -> None:
        if isinstance(self.get_base_layer(), QuantLinear):
            raise RuntimeError("cannot merge into a quantized base in place; use adaptlab's merge "
                               "(get_method(name).merge(model)), which dequantizes and then folds the update")
        super().merge(*args, **kwargs)


class QLoRA(LoRA):
    name = "qlora"
    paper = "Dettmers et al. 2023, QLoRA: Efficient Finetuning of Quantized LLMs, arXiv:2305.14314"
    description = "LoRA over a frozen NF4 base (blocks of 64, double-quantized constants, ~4.13 bits/param)"
    optimizer = staticmethod(make_optimizer)

    def quantizer(self, model: nn.Module, cfg: MethodConfig) -> Quantizer:
        """How each frozen weight is stored; LoftQ overrides this for the target layers."""
        return lambda name, w: quantize_nf4(w, double_quant=cfg.double_quant)

    def check(self, model: nn.Module, cfg: MethodConfig) -> None:
        check_targets(model, cfg.target_modules)
        check_rank(model, cfg)

    def apply(self, model: nn.Module, cfg: MethodConfig) -> nn.Module:
        self.check(model, cfg)
        quantize_model(model, self.quantizer(model, cfg))
        return get_peft_model(model, self.peft_config(cfg))

    def peft_config(self, cfg: MethodConfig):
        config = super().peft_config(cfg)
        config._register_custom_module({QuantLinear: QuantLoraLinear})  # peft's LoRA layer over our quantized base
        return config

    def merge(self, model: nn.Module) -> nn.Module:
        dequantize_model(base_model_of(model))
        return model.merge_and_unload()

    def load(self, base: nn.Module, path: Path) -> nn.Module:
        cfg = self.saved_config(path)
        self.check(base, cfg)
        quantize_model(base, self.saved_quantizer(base, cfg, Path(path)))
        return PeftModel.from_pretrained(base, path, config=self.peft_config(cfg))

    def saved_quantizer(self, model: nn.Module, cfg: MethodConfig, path: Path) -> Quantizer:
        """The quantizer that rebuilds the frozen base an adapter was trained on (QLoRA: quantize again)."""
        return self.quantizer(model, cfg)

    def saved_config(self, path: Path) -> MethodConfig:
        """The MethodConfig from adaptlab.json, else rebuilt from peft's adapter_config.json."""
        from adaptlab.methods.artifact import ARTIFACT_FILE, read_artifact_meta

        if (Path(path) / ARTIFACT_FILE).exists():
            return MethodConfig(**read_artifact_meta(path)["method_config"])
        return self.config_from_adapter(path)

    def config_from_adapter(self, path: Path) -> MethodConfig:
        """A MethodConfig rebuilt from peft's adapter_config.json (when no adaptlab.json is beside it)."""
        import json

        raw = json.loads((Path(path) / "adapter_config.json").read_text())
        return MethodConfig(name=self.name, r=raw["r"], alpha=raw["lora_alpha"], dropout=raw["lora_dropout"],
                            target_modules=sorted(raw["target_modules"]))


register(QLoRA())
