"""One training engine for every objective and method: read it top to bottom.

setup:  seed -> load model -> apply method -> build micro-batches -> optimizer + schedule -> resume
step:   the step's micro-batches (grad_accum x processes) -> loss / step target count -> backward
        -> sum gradients over processes -> clip -> optimizer step -> schedule step
around: metrics to JSONL (and TensorBoard / W&B), periodic eval, atomic checkpoints, a callback
        per step for progress display, the final artifact in `<output_dir>/final`.
"""

from __future__ import annotations

import logging
import math
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from adaptlab.config import TrainConfig
from adaptlab.data.sources import data_hash, load_records
from adaptlab.methods import get_method
from adaptlab.methods.artifact import save_artifact
from adaptlab.models import auto_device, auto_dtype, load_model
from adaptlab.train import checkpoint as ckpt
from adaptlab.train.distributed import (World, all_reduce_sum, barrier, choose_parallel, close, full_state_dict,
                                        init_world, shard_model, sync_gradients)
from adaptlab.train.loggers import open_loggers
from adaptlab.train.manifest import write_manifest
from adaptlab.train.rundir import claim_output_dir
from adaptlab.train.objectives import get_objective
from adaptlab.train.speed import apply_speed_settings, eta_message, mixed_precision

log = logging.getLogger(__name__)


@dataclass
class StepMetrics:
    step: int
    max_steps: int
    loss: float
    lr: float
    tokens_per_s: float
    grad_norm: float | None
    eval_loss: float | None = None


@dataclass
class TrainResult:
    output_dir: Path
    final_dir: Path
    steps: int
    train_losses: list[float] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    tokens: int = 0
    train_seconds: float = 0.0
    peak_mb: float = 0.0
    trainable_params: int = 0
    total_params: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.train_seconds, 1e-9)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warmup, then cosine or linear decay to zero (or constant)."""
    warm, total, kind = cfg.optim.warmup_steps, cfg.max_steps, cfg.optim.schedule

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warm) / max(total - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * progress)) if kind == "cosine" else max(0.0, 1 - progress)

    return factor


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: allocated CUDA memory, or on CPU the resident-set high-water mark. On Linux
    that is VmHWM, the process's own: ru_maxrss also carries the peak of the parent it was spawned from (the
    kernel keeps it across exec), so a run launched by a large process would report the launcher's peak."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def split_records(cfg: TrainConfig) -> tuple[list, list]:
    """Train and eval records; without an eval source, a seeded slice of the train data is held out."""
    train = load_records(cfg.data.train, kind=cfg.data.kind, limit=cfg.data.limit)
    if cfg.data.eval:
        return train, load_records(cfg.data.eval, kind=cfg.data.kind)[: cfg.data.eval_max]
    n_eval = min(cfg.data.eval_max, int(len(train) * cfg.data.eval_fraction))
    if n_eval == 0:
        return train, []
    order = random.Random(cfg.seed).sample(range(len(train)), len(train))
    return [train[i] for i in order[n_eval:]], [train[i] for i in order[:n_eval]]


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, on_step: Callable[[StepMetrics], None] | None = None):
        self.cfg, self.resume, self.on_step = cfg, resume, on_step
        self.out = Path(cfg.output_dir)

    # ---- setup -------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        device = auto_device(cfg.device)
        self.world: World = init_world(device.type)
        if device.type == "cuda" and self.world.size > 1:
            device = torch.device("cuda", self.world.local_rank)
        self.device = device
        self.compute_dtype = auto_dtype(cfg.dtype, device)
        seed_everything(cfg.seed)

        self.objective = get_objective(cfg.objective)
        self.method = get_method(cfg.method.name)
        train_records, eval_records = split_records(cfg)
        self.tokenizer, self.model = self.build_model(device)
        self.model.train()
        self.train_batches = self.objective.batches(train_records, self.tokenizer, cfg)
        self.eval_batches = self.objective.batches(eval_records, self.tokenizer, cfg) if eval_records else []
        if (prepare := getattr(self.objective, "prepare", None)) is not None:  # heads, reference log-probs
            with self.autocast():
                self.model = prepare(self.model, self.tokenizer, cfg, self.train_batches + self.eval_batches, self.out)
        self.footprint = self.method.footprint(self.model)
        self.speed = apply_speed_settings(self.model, cfg.compile, cfg.activation_checkpointing, device)
        self.parallel = choose_parallel(cfg.parallel, self.world)
        # loss(batch) -> (summed loss, target count); under fsdp through the sharded root
        self.unit = shard_model(self.model, self.objective.loss, device.type) if self.parallel == "fsdp" else None
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError(f"method {cfg.method.name!r} left no trainable parameter")

        # a method may bring its own optimizer (QLoRA: paged 8-bit AdamW on CUDA); it logs which one runs
        # torch's AdamW fused into one kernel per parameter (not ~10 ops each), as transformers' Trainer runs it;
        # fsdp's sharded parameters take the default implementation
        make_optimizer = getattr(self.method, "optimizer", None) or partial(torch.optim.AdamW, fused=self.unit is None)
        self.optimizer = make_optimizer(self.params, lr=cfg.optim.lr, betas=cfg.optim.betas,
                                        weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        self.start_step = 0
        if self.resume and (found := ckpt.resume_latest(self.out, self.model, self.optimizer, self.scheduler)):
            last, self.start_step = found
            log.info("resumed from %s (step %d)", last, self.start_step)
        if self.world.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_manifest(self.out / "manifest.json", config=cfg.model_dump(), seed=cfg.seed, resume=self.resume,
                           world_size=self.world.size,
                           data_hashes={"train": data_hash(train_records), "eval": data_hash(eval_records)},
                           extra={"resumed_from_step": self.start_step, "parallel": self.parallel, "footprint": self.footprint.as_dict(),
                                  "compute_dtype": str(self.compute_dtype), "speed": self.speed, "n_train_batches": len(self.train_batches)})
        self.loggers = open_loggers(cfg.loggers, self.out, cfg.model_dump(), self.start_step) if self.world.is_main else []

    def build_model(self, device: torch.device):
        """(tokenizer, base model wrapped by the method). Full fine-tuning keeps fp32 master weights;
        adapter methods keep the frozen base in the compute dtype."""
        cfg = self.cfg
        weights = "fp32" if cfg.method.name == "full" else str(self.compute_dtype).removeprefix("torch.")
        loaded = load_model(cfg.model, dtype=weights, device=str(device))
        return loaded.tokenizer, self.method.apply(loaded.model, cfg.method)

    def unsharded_model(self):
        """The trained model whole, on the main process (None elsewhere). Under fsdp every process
        enters: the main one gathers the weights into a fresh copy."""
        if self.unit is None:
            return self.model
        state = full_state_dict(self.model, trainable_only=False)
        if not self.world.is_main:
            return None
        _, model = self.build_model(torch.device("cpu"))
        model.load_state_dict(state)
        return model

    # ---- one step ----------------------------------------------------------------------------
    def step_batches(self, step: int) -> list:
        """This process's micro-batches for `step`, from an epoch-wise seeded shuffle of all batches."""
        n, per_step = len(self.train_batches), self.cfg.grad_accum * self.world.size
        step //= getattr(self.objective, "steps_per_batch", 1)   # PPO: one rollout serves several optimizer steps
        picked = []
        for j in range(per_step):
            pos = step * per_step + j
            epoch, idx = divmod(pos, n)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed + epoch))
            picked.append(self.train_batches[int(order[idx])])
        return picked

    def loss(self, batch):
        return self.unit(batch) if self.unit is not None else self.objective.loss(self.model, batch)

    def autocast(self):
        return mixed_precision(self.model, self.device.type, self.compute_dtype)

    def train_step(self, step: int) -> tuple[float, int, float | None]:
        """One optimizer step; returns (mean loss over the whole step, tokens, grad norm)."""
        batches = self.step_batches(step)
        count = sum(self.objective.size(b) for b in batches)  # the same on every process
        mine = batches[self.world.rank::self.world.size]
        total, tokens = 0.0, 0
        for batch in mine:
            batch = batch.to(self.device)
            with self.autocast():
                loss_sum, _ = self.loss(batch)
            (loss_sum / max(count, 1)).backward()
            total += float(loss_sum.detach())
            tokens += self.objective.tokens(batch)
        if self.parallel == "ddp":
            sync_gradients(self.params, self.world)
        norm = None
        if self.cfg.optim.max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.max_grad_norm)
            norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # a DTensor under fsdp
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        stats = all_reduce_sum(torch.tensor([total, float(tokens)], dtype=torch.float64), self.world)
        return float(stats[0]) / max(count, 1), int(stats[1]), norm

    @torch.no_grad()
    def evaluate(self) -> float | None:
        if not self.eval_batches:
            return None
        self.model.eval()
        total = count = 0.0
        mine = self.eval_batches[self.world.rank::self.world.size]
        # under fsdp every forward is a collective: a process with fewer batches runs a discarded one
        rounds = -(-len(self.eval_batches) // self.world.size) if self.parallel == "fsdp" else len(mine)
        for i in range(rounds):
            batch = mine[i] if i < len(mine) else self.eval_batches[0]
            with self.autocast():
                loss_sum, n = self.loss(batch.to(self.device))
            if i < len(mine):
                total, count = total + float(loss_sum), count + n
        self.model.train()
        stats = all_reduce_sum(torch.tensor([total, count], dtype=torch.float64), self.world)
        return float(stats[0] / max(stats[1], 1))

    # ---- the run -----------------------------------------------------------------------------
    def save(self, step: int) -> None:
        params, optim = ckpt.trainable_state(self.model, self.optimizer)   # every process: gathers under fsdp
        if self.world.is_main:
            ckpt.save_checkpoint(self.out, step, params, optim, self.scheduler, self.cfg.keep_last)
        barrier(self.world)

    def run(self) -> TrainResult:
        self.setup()
        cfg = self.cfg
        result = TrainResult(self.out, self.out / "final", cfg.max_steps, trainable_params=self.footprint.trainable_params,
                             total_params=self.footprint.total_params)
        try:
            for step in range(self.start_step, cfg.max_steps):
                t0 = time.perf_counter()
                loss, tokens, norm = self.train_step(step)
                seconds = time.perf_counter() - t0
                result.train_seconds += seconds
                if step == self.start_step + self.speed["compiled"] and self.world.is_main and \
                        (eta := eta_message(seconds, cfg.max_steps - step - 1)):
                    log.info(eta)  # from one measured step (after the compiling one)
                result.tokens += tokens
                result.train_losses.append(loss)
                done = step + 1
                eval_loss = self.evaluate() if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.max_steps else None
                if eval_loss is not None:
                    result.eval_losses.append((done, eval_loss))
                metrics = StepMetrics(done, cfg.max_steps, loss, self.scheduler.get_last_lr()[0],
                                      result.tokens_per_s, norm, eval_loss)
                objective_stats = self.objective.pop_stats() if hasattr(self.objective, "pop_stats") else {}
                for logger in self.loggers:
                    logger.log({k: v for k, v in metrics.__dict__.items() if v is not None} | objective_stats)
                if self.on_step and self.world.is_main:
                    self.on_step(metrics)
                saving = (cfg.save_every and done % cfg.save_every == 0) or done == cfg.max_steps
                if (saving or eval_loss is not None) and self.world.is_main and hasattr(self.objective, "draw"):
                    self.objective.draw()   # RL curves, drawn by one process at evaluations, saves and the end
                if saving:
                    self.save(done)
            result.peak_mb = peak_memory_mb(self.device)
            model = self.unsharded_model()
            if self.world.is_main:
                save_artifact(model, self.tokenizer, self.method, cfg.method, cfg.model, result.final_dir)
                if hasattr(self.objective, "save"):  # the reward head beside the method's files
                    self.objective.save(model, result.final_dir)
            barrier(self.world)
        finally:
            for logger in self.loggers:
                logger.close()
            close(self.world)
        return result


def train(cfg: TrainConfig, resume: bool = False, on_step: Callable[[StepMetrics], None] | None = None,
          overwrite: bool = False) -> TrainResult:
    """Train `cfg` to the end (resuming from the last checkpoint when `resume`) and save the artifact.
    An output_dir holding another run is refused unless `resume` or `overwrite` (which deletes that run)."""
    claim_output_dir(cfg.output_dir, resume=resume, overwrite=overwrite)
    return Trainer(cfg, resume=resume, on_step=on_step).run()
