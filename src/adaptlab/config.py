"""Recipe schema: one pydantic model per recipe, loaded from YAML, overridable key by key.

`load_config("examples/sft-lora.yaml", ["optim.lr=1e-4", "max_steps=20"])` reads the file, applies the
overrides (values parsed as YAML, so `true`, `3`, `[a, b]` work) and validates. An unknown key is an
error that names the key and lists the allowed ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from adaptlab.methods.base import MethodConfig
from adaptlab.yamlfile import YamlFileError as ConfigError
from adaptlab.yamlfile import explain, load_model, set_key

__all__ = ["ConfigError", "explain", "load_config", "set_key"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    train: str = Field("alpaca-seed", description="builtin name, local file (.jsonl/.json/.csv/.parquet) or hub id")
    eval: str | None = Field(None, description="held-out data; default: split `eval_fraction` off the train data")
    eval_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    eval_max: int = Field(64, ge=1, description="at most this many eval examples")
    limit: int | None = Field(None, ge=1, description="use only the first N train records")
    kind: str | None = Field(None, description="record kind; default: detected from the fields")


class OptimConfig(Strict):
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(5, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float | None = Field(1.0, gt=0)


class DPOConfig(Strict):
    """Settings of `objective: dpo` (train/objectives/dpo.py)."""

    beta: float = Field(0.1, gt=0, description="strength of the pull towards the reference policy")
    loss: Literal["sigmoid", "ipo"] = Field("sigmoid", description="sigmoid = DPO (Rafailov 2023); ipo = IPO (Azar 2023)")
    cache_reference: bool = Field(True, description="keep the reference log-probs on disk with the run, reused on resume")


class RLOOConfig(Strict):
    """Settings of `objective: rloo` (train/objectives/rloo.py)."""

    reward: str | None = Field(None, description="reward spec: a reward model dir, 'module:function' or 'kind:value' "
                               "(train/rewards.py); e.g. adaptlab.train.rewards:brevity")
    k: int = Field(4, ge=2, description="samples per prompt (the leave-one-out group)")
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(1.0, gt=0)
    kl_coef: float = Field(0.05, ge=0, description="beta of the KL penalty to the reference, in the reward")
    kl_estimator: Literal["k1", "k3"] = Field("k1", description="per-token KL estimate summed over the answer: "
                                              "k1 = log pi - log pi_ref, k3 = (r - 1) - log r >= 0 (r = pi_ref/pi)")
    normalize_advantages: bool = Field(False, description="whiten the advantages over the batch (as trl's option)")


class PPOConfig(Strict):
    """Settings of `objective: ppo` (train/objectives/ppo.py); defaults as trl's last PPOTrainer."""

    reward: str | None = Field(None, description="reward spec, as rloo.reward (train/rewards.py)")
    k: int = Field(1, ge=1, description="samples per prompt")
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(1.0, gt=0)
    kl_coef: float = Field(0.05, ge=0, description="beta of the per-token KL penalty to the reference, in the reward")
    kl_estimator: Literal["k1", "k3"] = Field("k1", description="k1 = log pi - log pi_ref; k3 = (r - 1) - log r >= 0")
    gamma: float = Field(1.0, ge=0, le=1, description="discount of GAE")
    lam: float = Field(0.95, ge=0, le=1, description="lambda of GAE")
    cliprange: float = Field(0.2, gt=0, description="epsilon of the clipped policy ratio")
    cliprange_value: float = Field(0.2, gt=0, description="epsilon of the clipped value update")
    vf_coef: float = Field(0.1, ge=0, description="weight of the value loss")
    ppo_epochs: int = Field(1, ge=1, description="optimizer steps on each rollout (each counts in max_steps)")


class TrainConfig(Strict):
    model: str = Field("smollm2-135m", description="builtin name, hub id, local dir or .gguf file")
    objective: str = Field("sft", description="sft | reward | dpo | rloo | ppo (train/objectives/)")
    dpo: DPOConfig = Field(default_factory=DPOConfig)
    rloo: RLOOConfig = Field(default_factory=RLOOConfig)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    seq_len: int = Field(512, ge=16)
    batch_size: int = Field(8, ge=1, description="sequences per micro-batch per process")
    grad_accum: int = Field(1, ge=1)
    max_steps: int = Field(100, ge=1)
    packing: bool = True
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile each decoder layer (inductor); auto = on where measured faster "
        "(adaptlab.train.speed.COMPILE_FASTER)")
    activation_checkpointing: bool | Literal["alternate"] = Field(
        False, description="recompute each decoder layer's activations in backward: less memory on long "
        "sequences, ~1/3 more compute; alternate = every other layer (about half the saving for half the cost)")
    dtype: str = Field("auto", description="auto | bf16 | fp16 | fp32: the compute dtype")
    device: str = "auto"
    parallel: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="with several processes: ddp replicates the model and all-reduces gradients; fsdp "
        "shards parameters, gradients and optimizer state (FSDP2, one unit per decoder layer); auto = fsdp when "
        "`accelerate launch` runs with an FSDP config, else ddp")
    seed: int = 42
    eval_every: int = Field(25, ge=0, description="0 turns periodic eval off")
    save_every: int = Field(50, ge=0, description="checkpoint every N steps; 0 only at the end")
    keep_last: int = Field(2, ge=1)
    output_dir: str = "runs/sft"
    loggers: list[Literal["jsonl", "tensorboard", "wandb"]] = Field(default_factory=lambda: ["jsonl"])


def load_config(path: str | Path | None, overrides: list[str] = (), schema: type[BaseModel] = TrainConfig):
    """Read a YAML recipe (or start from defaults), apply `key=value` overrides, validate."""
    if path and not Path(path).exists():
        raise ConfigError(f"recipe {path} does not exist")
    return load_model(path, schema, overrides)
