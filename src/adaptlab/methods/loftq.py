"""LoftQ: QLoRA whose target layers start from a quantized Q and adapters (A, B) with Q + s B A ~= W.

Li et al. 2023, arXiv:2310.08659 (the alternation lives in `adaptlab.quant.loftq`). With LoRA's
scale s = alpha / r the adapters are set to A / sqrt(s), B / sqrt(s), so the model at step 0 computes
Q + B A, the LoftQ approximation of W instead of QLoRA's plain q_N(W).

bits = 4 quantizes with NF4 (the same quantizer as QLoRA); bits = 2, 3 or 8 use group-wise intN with
`group_size` input channels per group. Unlike peft's LoftQ init (CUDA/XPU only, needs bitsandbytes),
this runs on any torch device.

The target layers' Q depend on the alternation, so an artifact stores them beside the adapter
(`loftq_base.safetensors`: each layer's code buffers, their layout in the file's metadata); the other
layers are plain NF4 and are quantized again on load.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from peft import get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

from adaptlab.methods.base import MethodConfig, base_model_of, register
from adaptlab.methods.qlora import QLoRA
from adaptlab.quant.groupwise import check_groupwise, quantize_groupwise
from adaptlab.quant.layers import FORMATS, Quantizer, QuantLinear, quantize_model
from adaptlab.quant.loftq import loftq
from adaptlab.quant.nf4 import quantize_nf4

log = logging.getLogger(__name__)
BASE_FILE = "loftq_base.safetensors"


def is_target(name: str, cfg: MethodConfig) -> bool:
    return name.rsplit(".", 1)[-1] in cfg.target_modules


class LoftQ(QLoRA):
    name = "loftq"
    paper = "Li et al. 2023, LoftQ: LoRA-Fine-Tuning-Aware Quantization for Large Language Models, arXiv:2310.08659"
    description = "QLoRA started from alternating quantize / rank-r SVD so that Q + B A ~= W"

    def weight_quantizer(self, cfg: MethodConfig):
        if cfg.bits == 4:
            return lambda w: quantize_nf4(w, double_quant=cfg.double_quant)
        return lambda w: quantize_groupwise(w, cfg.bits, cfg.group_size)

    def check(self, model: nn.Module, cfg: MethodConfig) -> None:
        super().check(model, cfg)
        if cfg.bits != 4:
            for name, m in model.named_modules():
                if isinstance(m, nn.Linear) and is_target(name, cfg):
                    check_groupwise(tuple(m.weight.shape), cfg.bits, cfg.group_size, name)

    def apply(self, model: nn.Module, cfg: MethodConfig) -> nn.Module:
        self.check(model, cfg)
        inits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        quantize_model(model, self.loftq_quantizer(model, cfg, inits))
        peft_model = get_peft_model(model, self.peft_config(cfg))
        root = math.sqrt(cfg.alpha / cfg.r)
        for name, (A, B) in inits.items():
            layer = peft_model.base_model.model.get_submodule(name)
            layer.lora_A["default"].weight.data.copy_(A / root)
            layer.lora_B["default"].weight.data.copy_(B / root)
        return peft_model

    def loftq_quantizer(self, model: nn.Module, cfg: MethodConfig, inits: dict) -> Quantizer:
        """Targets: LoftQ alternation (A, B stored in `inits`); every other weight: plain NF4."""
        plain, weight_q = self.quantizer(model, cfg), self.weight_quantizer(cfg)

        def quantize(name: str, w: torch.Tensor):
            if not is_target(name, cfg):
                return plain(name, w)
            result = loftq(w, cfg.r, cfg.loftq_iters, weight_q)
            log.debug("loftq %s: ||W-Q||=%.4g -> ||W-(Q+BA)||=%s", name, result.quant_error, result.errors)
            inits[name] = (result.A.to(w.dtype), result.B.to(w.dtype))
            return result.q
        return quantize

    def save(self, model: nn.Module, path: Path) -> None:
        super().save(model, path)
        tensors, layout = {}, {}
        for name, m in base_model_of(model).named_modules():
            if isinstance(m, QuantLinear) and name.endswith(".base_layer"):
                layer = name.removesuffix(".base_layer")
                layout[layer] = m.qmeta
                for key, t in m.quantized().buffers().items():
                    tensors[f"{layer}.{key}"] = t.contiguous()
        save_file(tensors, Path(path) / BASE_FILE, metadata={"layout": json.dumps(layout)})

    def saved_quantizer(self, model: nn.Module, cfg: MethodConfig, path: Path) -> Quantizer:
        from safetensors import safe_open

        with safe_open(str(Path(path) / BASE_FILE), "pt") as f:
            layout = json.loads(f.metadata()["layout"])
        tensors = load_file(Path(path) / BASE_FILE)
        plain = self.quantizer(model, cfg)

        def quantize(name: str, w: torch.Tensor):
            if name not in layout:
                return plain(name, w)
            meta = layout[name]
            bufs = {k.removeprefix(name + "."): v.to(w.device) for k, v in tensors.items() if k.startswith(name + ".")}
            return FORMATS[meta["format"]](bufs, meta)
        return quantize


register(LoftQ())
