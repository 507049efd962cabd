"""QA-LoRA: LoRA whose update is constant inside each quantization group, so it merges into the zero points.

Xu et al. 2023, "QA-LoRA: Quantization-Aware Low-Rank Adaptation of Large Language Models",
arXiv:2309.14717. Each frozen weight W [out, in] is stored group-wise asymmetric INT-N
(`adaptlab.quant.groupwise`, groups of L contiguous input channels): W~ = s_g (q - z_g).
The adapter sees the input average-pooled over each group (official convention: AvgPool1d(L),
dropout *after* pooling, scale s = alpha / r):

    y = W~ x + s * B A dropout(pool_L(x)),     pool_L(x)_g = (1/L) sum_{k in g} x_k,   A: [r, in/L], B: [out, r]

so the dense update is Delta[o, k] = (s / L) (B A)[o, g(k)]: constant over a group. Merging keeps the
integer codes q and the scales and moves the update into the (float) zero points:

    s_g (q - z'_g) = s_g (q - z_g) + Delta_g   <=>   z'_g = z_g - (s / L) (B A)_g / s_g

so the merged model is exactly a group-quantized INT-N model (`adaptlab.quant.export` writes it).
peft's QA-LoRA variant (GPTQ-only) sums instead of averaging (`pool(x) * L`); adapters are saved in
peft's format with `use_qalora` and B divided by L, so the file means the same update under peft's
convention.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from peft import LoraConfig
from safetensors.torch import load_file, save_file
from torch import nn

from adaptlab.methods.base import Footprint, MethodConfig, check_targets, count_footprint, freeze, register
from adaptlab.quant.groupwise import GroupTensor, check_groupwise, quantize_groupwise
from adaptlab.quant.layers import QuantLinear, _parent, quantizable_linears, quantize_model

PREFIX = "base_model.model."  # peft's key prefix, so the adapter file reads like peft's


class QALoRALinear(QuantLinear):
    """A frozen group-quantized linear plus the group-pooled LoRA update."""

    def __init__(self, base: QuantLinear, r: int, alpha: float, dropout: float):
        q = base.quantized()
        super().__init__(q, base.bias, base.compute_dtype)
        self.group_size = q.group_size
        self.scaling = alpha / r
        self.lora_A = nn.Linear(self.in_features // q.group_size, r, bias=False, device=base.qweight.device)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=base.qweight.device)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # as peft: A random, B zero
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.in_features // self.group_size, self.group_size).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        update = self.lora_B(self.lora_A(self.dropout(self.pool(x).to(self.lora_A.weight.dtype))))
        return y + (update * self.scaling).to(y.dtype)

    @torch.no_grad()
    def merged(self) -> QuantLinear:
        """The same layer with the update folded into fp32 zero points (codes and scales untouched)."""
        q = self.quantized()
        delta = self.scaling / self.group_size * (self.lora_B.weight.float() @ self.lora_A.weight.float())
        zeros = q.zeros.float() - delta / q.scales.float()
        return QuantLinear(GroupTensor(q.qweight, q.scales, zeros, q.shape, q.bits, q.group_size), self.bias,
                           self.compute_dtype)


def _layers(model: nn.Module) -> dict[str, QALoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QALoRALinear)}


class QALoRA:
    name = "qalora"
    paper = "Xu et al. 2023, QA-LoRA: Quantization-Aware Low-Rank Adaptation of Large Language Models, arXiv:2309.14717"
    description = "group-wise INT-N base + group-pooled LoRA; merges into the zero points, stays low-bit"

    def check(self, model: nn.Module, cfg: MethodConfig) -> None:
        """Every error before any weight is touched: targets, bits, group size, rank."""
        check_targets(model, cfg.target_modules)
        linears = quantizable_linears(model)
        if not linears:
            raise ValueError(f"qalora quantizes nn.Linear layers and {type(model).__name__} has none")
        for name in linears:
            layer = model.get_submodule(name)
            check_groupwise(tuple(layer.weight.shape), cfg.bits, cfg.group_size, name)
            if name.rsplit(".", 1)[-1] in cfg.target_modules:
                limit = min(layer.in_features // cfg.group_size, layer.out_features)
                if cfg.r > limit:
                    raise ValueError(f"rank r={cfg.r} is larger than layer {name} allows after pooling groups of "
                                     f"{cfg.group_size} ({layer.in_features}/{cfg.group_size} inputs): r <= {limit}")
        emb = model.get_input_embeddings()
        if isinstance(emb, nn.Embedding):
            check_groupwise(tuple(emb.weight.shape), cfg.bits, cfg.group_size, "input embedding")

    def apply(self, model: nn.Module, cfg: MethodConfig) -> nn.Module:
        self.check(model, cfg)
        quantize_model(model, lambda name, w: quantize_groupwise(w, cfg.bits, cfg.group_size))
        freeze(model)
        for name, module in list(model.named_modules()):
            if isinstance(module, QuantLinear) and name.rsplit(".", 1)[-1] in cfg.target_modules:
                parent, child = _parent(model, name)
                setattr(parent, child, QALoRALinear(module, cfg.r, cfg.alpha, cfg.dropout))
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        """Fold every adapter into its zero points: the result is a plain group-quantized model."""
        for name, layer in _layers(model).items():
            parent, child = _parent(model, name)
            setattr(parent, child, layer.merged())
        return model

    def peft_config(self, cfg: MethodConfig) -> LoraConfig:
        return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.target_modules,
                          use_qalora=True, qalora_group_size=cfg.group_size, task_type="CAUSAL_LM")

    def save(self, model: nn.Module, path: Path) -> None:
        """peft layout: adapter_config.json (use_qalora) + adapter_model.safetensors; B stored / L (peft sums)."""
        layers = _layers(model)
        if not layers:
            raise ValueError("no QA-LoRA layers in this model (already merged?); save a merged model with "
                             "adaptlab.quant.export.save_quantized")
        first = next(iter(layers.values()))
        cfg = MethodConfig(name=self.name, r=first.lora_A.out_features, alpha=first.scaling * first.lora_A.out_features,
                           dropout=getattr(first.dropout, "p", 0.0), group_size=first.group_size,
                           bits=first.qmeta["bits"], target_modules=sorted({n.rsplit(".", 1)[-1] for n in layers}))
        tensors = {}
        for name, layer in layers.items():
            tensors[f"{PREFIX}{name}.lora_A.weight"] = layer.lora_A.weight.detach().contiguous()
            tensors[f"{PREFIX}{name}.lora_B.weight"] = (layer.lora_B.weight.detach() / layer.group_size).contiguous()
        Path(path).mkdir(parents=True, exist_ok=True)
        save_file(tensors, Path(path) / "adapter_model.safetensors")
        self.peft_config(cfg).save_pretrained(str(path))
        (Path(path) / "qalora.json").write_text(json.dumps({"bits": cfg.bits}))

    def load(self, base: nn.Module, path: Path) -> nn.Module:
        raw = json.loads((Path(path) / "adapter_config.json").read_text())
        bits = json.loads((Path(path) / "qalora.json").read_text())["bits"]
        cfg = MethodConfig(name=self.name, r=raw["r"], alpha=raw["lora_alpha"], dropout=raw["lora_dropout"],
                           target_modules=sorted(raw["target_modules"]), group_size=raw["qalora_group_size"], bits=bits)
        model = self.apply(base, cfg)
        tensors = load_file(Path(path) / "adapter_model.safetensors")
        with torch.no_grad():
            for name, layer in _layers(model).items():
                layer.lora_A.weight.copy_(tensors[f"{PREFIX}{name}.lora_A.weight"])
                layer.lora_B.weight.copy_(tensors[f"{PREFIX}{name}.lora_B.weight"] * layer.group_size)
        return model

    def footprint(self, model: nn.Module) -> Footprint:
        return count_footprint(model)


register(QALoRA())
