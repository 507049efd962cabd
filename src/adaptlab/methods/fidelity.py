"""Merge fidelity: how far a merged model's logits drift from the adapter model it came from.

Merging is where low-bit users lose quality silently (e.g. folding an update into NF4 and quantizing
again). `merge_with_report` runs the same prompts through the model before and after the merge and
reports the largest and the mean absolute logit difference over the prompts' real tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

# max |logit difference| a merge may cause before `adaptlab merge` refuses to save it
DEFAULT_THRESHOLD = 0.05
SAMPLE_PROMPTS = [
    "The capital of France is",
    "Question: What is 12 times 7?\nAnswer:",
    "def fibonacci(n):",
    "Write a short note thanking a colleague for their help.",
]


@dataclass
class Drift:
    max_abs: float
    mean_abs: float
    tokens: int

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def prompt_logits(model: nn.Module, tokenizer, prompts: Sequence[str]) -> list[torch.Tensor]:
    """fp32 logits of each prompt, run one at a time (no padding to mask)."""
    device = next(model.parameters()).device
    out = []
    for text in prompts:
        ids = tokenizer(text, return_tensors="pt").input_ids.to(device)
        out.append(model(input_ids=ids).logits[0].float().cpu())
    return out


def logit_drift(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> Drift:
    """max and mean |before - after| over every position and vocabulary entry."""
    diffs = torch.cat([(a - b).abs().reshape(-1) for a, b in zip(before, after, strict=True)])
    return Drift(max_abs=float(diffs.max()), mean_abs=float(diffs.mean()), tokens=sum(len(a) for a in before))


def merge_with_report(model: nn.Module, tokenizer, merge: Callable[[nn.Module], nn.Module],
                      prompts: Sequence[str] = SAMPLE_PROMPTS) -> tuple[nn.Module, Drift]:
    """Merge with `merge` and measure the logit drift it caused on `prompts`."""
    model.eval()
    before = prompt_logits(model, tokenizer, prompts)
    merged = merge(model)
    merged.eval()
    return merged, logit_drift(before, prompt_logits(merged, tokenizer, prompts))


class DriftTooLarge(RuntimeError):
    def __init__(self, drift: Drift, threshold: float):
        super().__init__(f"merging changed the logits by up to {drift.max_abs:.4g} (mean {drift.mean_abs:.4g}), "
                         f"above the threshold {threshold:g}; pass --force to save anyway or raise --threshold")
        self.drift, self.threshold = drift, threshold


def check_drift(drift: Drift, threshold: float, force: bool = False) -> None:
    """Refuse a merge whose max drift exceeds `threshold` unless forced."""
    if drift.max_abs > threshold and not force:
        raise DriftTooLarge(drift, threshold)


@dataclass
class MergeReport:
    method: str
    out: str
    drift: Drift
    low_bit: bool


def merge_artifact(path: str | Path, out: str | Path, threshold: float = DEFAULT_THRESHOLD, force: bool = False,
                   prompts: Sequence[str] = SAMPLE_PROMPTS, dtype: str = "fp32", device: str = "auto",
                   save_dtype: str = "auto") -> MergeReport:
    """Load a trained artifact, merge it, check the drift, then save a merged model to `out`.

    The merged model is a transformers folder, or a low-bit export (`adaptlab.quant.export`) when the
    merge leaves quantized layers (QA-LoRA). Nothing is written when the drift is above `threshold`
    unless `force`. Merging runs in fp32 by default so the drift measures the merge, not bf16 rounding;
    the float weights are then saved in `save_dtype` (auto: bf16 where the device computes it).
    """
    from adaptlab.methods.artifact import load_artifact
    from adaptlab.models import auto_dtype
    from adaptlab.quant.export import save_quantized
    from adaptlab.quant.layers import QuantEmbedding, QuantLinear

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another --out")
    art = load_artifact(path, dtype=dtype, device=device)
    merged, drift = merge_with_report(art.model, art.tokenizer, art.method.merge, prompts)
    check_drift(drift, threshold, force)
    merged.to(auto_dtype(save_dtype, next(merged.parameters()).device))  # quantized codes keep their own dtypes
    low_bit = any(isinstance(m, (QuantLinear, QuantEmbedding)) for m in merged.modules())
    if low_bit:
        save_quantized(merged, out, art.tokenizer)
    else:
        merged.save_pretrained(out, safe_serialization=True)
        art.tokenizer.save_pretrained(out)
    return MergeReport(method=art.method.name, out=str(out), drift=drift, low_bit=low_bit)
