"""IA3 through peft: learned vectors that rescale keys, values and the FFN's inner activations.

Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
Learning" (T-Few), arXiv:2205.05638:

    k' = l_k * k,   v' = l_v * v,   FFN(x) = W_2 (l_ff * gamma(W_1 x))

with l_k, l_v, l_ff vectors initialised to ones (training starts at the base model). In a Llama the
FFN's inner activation is the input of down_proj, so down_proj is a "feedforward" module (its input is
scaled) while k_proj / v_proj have their outputs scaled. Merge folds each vector into its weight's
columns (feedforward) or rows. The trainable share is ~0.01-0.1% of the model.
"""

from __future__ import annotations

from peft import IA3Config, get_peft_model
from torch import nn

from adaptlab.methods.base import DEFAULT_TARGETS, MethodConfig, check_targets, register
from adaptlab.methods.lora import PeftAdapter

IA3_TARGETS = ["k_proj", "v_proj", "down_proj"]
FEEDFORWARD = {"down_proj", "fc2", "w2"}  # layers whose *input* is the FFN activation


class IA3(PeftAdapter):
    name = "ia3"
    paper = "Liu et al. 2022, Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning, arXiv:2205.05638"
    description = "learned vectors scaling keys, values and FFN activations (W x -> l * W x)"

    def targets(self, cfg: MethodConfig) -> list[str]:
        """The method config's targets; the LoRA default set means "IA3's own default" (k, v, down)."""
        return list(IA3_TARGETS) if cfg.target_modules == DEFAULT_TARGETS else list(cfg.target_modules)

    def peft_config(self, cfg: MethodConfig) -> IA3Config:
        targets = self.targets(cfg)
        return IA3Config(target_modules=targets, feedforward_modules=[t for t in targets if t in FEEDFORWARD],
                         task_type="CAUSAL_LM")

    def apply(self, model: nn.Module, cfg: MethodConfig) -> nn.Module:
        check_targets(model, self.targets(cfg))
        return get_peft_model(model, self.peft_config(cfg))


register(IA3())
