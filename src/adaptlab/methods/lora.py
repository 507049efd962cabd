"""LoRA and DoRA through peft; adapters are written in peft's own format.

LoRA (Hu et al. 2021, arXiv:2106.09685): h = W x + (alpha / r) * B A x, with W frozen,
A in R^{r x k}, B in R^{d x r}, B initialised to zero so training starts at the base model.
DoRA (Liu et al. 2024, arXiv:2402.09353): W' = m * (W + B A) / ||W + B A||_c, a learned magnitude
vector m per output column times the direction updated by LoRA.
"""

from __future__ import annotations

from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from adaptlab.methods.base import Footprint, MethodConfig, check_rank, check_targets, count_footprint, register


class PeftAdapter:
    """Shared save/load/merge/footprint for methods that peft implements (LoRA, DoRA, IA3)."""

    def save(self, model: nn.Module, path: Path) -> None:
        model.save_pretrained(path, safe_serialization=True)

    def load(self, base: nn.Module, path: Path) -> nn.Module:
        return PeftModel.from_pretrained(base, path)

    def merge(self, model: nn.Module) -> nn.Module:
        return model.merge_and_unload()

    def footprint(self, model: nn.Module) -> Footprint:
        return count_footprint(model)


class LoRA(PeftAdapter):
    name = "lora"
    paper = "Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models, arXiv:2106.09685"
    description = "frozen W plus a trained low-rank update (alpha/r) B A"
    use_dora = False

    def peft_config(self, cfg: MethodConfig) -> LoraConfig:
        return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=cfg.target_modules, use_dora=self.use_dora, task_type="CAUSAL_LM")

    def apply(self, model: nn.Module, cfg: MethodConfig) -> nn.Module:
        check_targets(model, cfg.target_modules)
        check_rank(model, cfg)
        return get_peft_model(model, self.peft_config(cfg))


class DoRA(LoRA):
    name = "dora"
    paper = "Liu et al. 2024, DoRA: Weight-Decomposed Low-Rank Adaptation, arXiv:2402.09353"
    description = "LoRA on the direction of W plus a trained magnitude vector"
    use_dora = True


register(LoRA())
register(DoRA())
