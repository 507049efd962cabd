"""The RLHF-vs-RLAIF recipe (`adaptlab feedback compare RECIPE [--budget quick]`): one YAML for every arm.

    model: smollm2-135m
    pairs: hh-rlhf-harmless            # the preference pairs that stand in for human votes
    split: {train_pairs: 320, judge_pairs: 320, calibration_pairs: 96, eval_prompts: 64}
    ai_judge: {model: smollm2-135m, scoring: letters, order_rule: average}
    rlaif_objective: rloo              # rloo (reward model on the AI labels + RLOO) | dpo (DPO on the AI labels)
    train: {method: {name: lora, r: 16, alpha: 32}}   # TrainConfig keys shared by every run
    sft: {max_steps: 40}  reward: {...}  rloo: {...}  dpo: {...}   # TrainConfig keys per stage
    budgets: {quick: [sft.max_steps=4, ...]}          # named sets of key=value overrides for --budget

Every stage's TrainConfig is `train` overridden by its own section; model, objective, data and output_dir are
set by the pipeline (feedback/comparison.py) and refused in the sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from adaptlab.config import ConfigError, Strict, load_config
from adaptlab.yamlfile import read_mapping

PIPELINE_KEYS = ("model", "objective", "data", "output_dir")


class SplitSpec(Strict):
    """Disjoint slices of the pairs (seeded shuffle), in this order."""
    train_pairs: int = Field(320, ge=4, description="the 'human votes': SFT on their chosen answers, the reward "
                             "models, DPO, and the pairs the AI judge relabels")
    judge_pairs: int = Field(320, ge=4, description="the held-out judge's reward model trains on these")
    calibration_pairs: int = Field(96, ge=4, description="held-out judge accuracy and the harmless-rate threshold")
    eval_prompts: int = Field(64, ge=2, description="prompts every policy answers for the win and harmless rates")
    max_chars: int | None = Field(None, ge=16, description="leave out pairs whose prompt transcript + longer answer "
                                  "exceeds this many characters (~4 a token): long dialogues cost every phase, and "
                                  "training skips those that fill seq_len anyway")


class AIJudgeSpec(Strict):
    model: str = Field("smollm2-135m", description="adaptlab model or OpenAI-compatible URL labelling the pairs")
    scoring: str = Field("letters", description="letters | contrastive (feedback/backends.py SCORINGS)")
    order_rule: str = Field("average", description="fastchat (order disagreement = tie) | average (RLAIF)")
    endpoint_model: str | None = Field(None, description="model name sent to an endpoint judge")


class GenerationSpec(Strict):
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.0, ge=0, description="0 = greedy (the same answer on a rerun)")
    batch_size: int = Field(8, ge=1)


class ComparisonConfig(Strict):
    model: str = "smollm2-135m"
    pairs: str = Field("hh-rlhf-harmless", description="builtin preference set or {prompt, chosen, rejected} JSONL")
    criteria: str = Field("harmless", description="helpful | harmless | a text file: what the judges judge")
    seed: int = 0
    split: SplitSpec = Field(default_factory=SplitSpec)
    ai_judge: AIJudgeSpec = Field(default_factory=AIJudgeSpec)
    rlaif_objective: Literal["rloo", "dpo"] = "rloo"
    heldout_judge: str = Field("reward-model", description="reward-model (trained on judge_pairs) or an "
                               "OpenAI-compatible URL judging policy vs SFT answers in both orders")
    heldout_judge_model: str | None = Field(None, description="model name sent to an endpoint held-out judge")
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys shared by every stage")
    sft: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys of the SFT policy")
    reward: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys of every reward model")
    rloo: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys of the RLOO policies")
    dpo: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys of the DPO policies")
    budgets: dict[str, list[str]] = Field(default_factory=dict, description="name -> key=value overrides")
    output_dir: str = "runs/rlhf-vs-rlaif"

    @field_validator("heldout_judge")
    @classmethod
    def _judge_kind(cls, value: str) -> str:
        if value != "reward-model" and not value.startswith(("http://", "https://")):
            raise ValueError("heldout_judge is reward-model or the http(s) URL of an OpenAI-compatible endpoint")
        return value

    @field_validator("train", "sft", "reward", "rloo", "dpo")
    @classmethod
    def _no_pipeline_keys(cls, section: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in PIPELINE_KEYS if k in section]
        if bad:
            raise ValueError(f"{', '.join(bad)} are set by the pipeline for each stage; remove them")
        return section


def load_comparison(path: str | Path, budget: str | None = None, overrides: list[str] = ()) -> ComparisonConfig:
    """Read the recipe, apply the named budget's overrides (`budgets: {quick: [...]}`) and then `overrides`."""
    extra: list[str] = []
    if budget:
        budgets = read_mapping(path, "recipe").get("budgets") or {}
        if budget not in budgets:
            raise ConfigError(f"recipe {path} has no budget {budget!r}; its budgets: {', '.join(budgets) or 'none'}")
        extra = list(budgets[budget])
    return load_config(path, [*extra, *overrides], schema=ComparisonConfig)
