"""Several processes with one code path: torchrun/accelerate set RANK and WORLD_SIZE, we read them.

Each process runs its share of the step's micro-batches; because every loss is divided by the whole
step's target count, the *summed* gradient equals one process's gradient on the whole batch. Two ways
to sum (gloo on CPU, NCCL on CUDA):

- ddp: every process holds the whole model; one coalesced all-reduce of the trainable gradients per step.
- fsdp: FSDP2 (`torch.distributed.fsdp.fully_shard`, one unit per decoder layer plus the root) shards
  parameters, gradients and optimizer state over the processes (Zhao et al. 2023, "PyTorch FSDP");
  gradients are reduce-scattered with the divide factor set to 1, i.e. summed like ddp.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(device_type: str) -> World:
    """Join the process group when launched by torchrun/accelerate; a single process otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def choose_parallel(setting: str, world: World) -> str:
    """ddp | fsdp for this run: `auto` follows `accelerate launch` (it sets ACCELERATE_USE_FSDP for an FSDP config)."""
    if world.size == 1:
        return "single"
    if setting == "auto":
        return "fsdp" if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true") else "ddp"
    return setting


class LossModule(torch.nn.Module):
    """The objective's loss as one module's forward. FSDP gathers a unit's parameters around its forward,
    and the root unit holds the embeddings, final norm and a tied head, which the loss reaches outside the
    model's own forward (hidden states, then the head weight): so the loss must run inside the root."""

    def __init__(self, model: torch.nn.Module, loss_fn) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


def shard_model(model: torch.nn.Module, loss_fn, device_type: str) -> LossModule:
    """FSDP2: each decoder layer is one unit (its parameters are gathered only while it runs); the root,
    a `LossModule` around the model and `loss_fn(model, batch)`, holds the rest. Gradients are summed,
    not averaged. Returns the root: call it with a batch for (loss_sum, count)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    if any(hasattr(m, "qmeta") for m in model.modules()):   # adaptlab.quant layers keep integer codes
        raise ValueError("parallel=fsdp shards floating-point weights; this method keeps a quantized base "
                         "(qlora, qalora, loftq): use parallel=ddp")
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    if not layers:
        raise ValueError(f"parallel=fsdp found no decoder layers to shard in {type(model).__name__}")
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    root = fully_shard(LossModule(model, loss_fn), mesh=mesh)
    for m in root.modules():
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)   # a plain SUM (gloo has no PREMUL_SUM)
    return root


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def full_state_dict(model: torch.nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    """Every (or every trainable) parameter of a sharded model, whole, on CPU: a collective that every
    process enters; the main process gets the tensors, the others an empty dict."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=full_options(trainable_only))


def full_options(trainable_only: bool = True):
    """torch.distributed.checkpoint options for whole (gathered) tensors on CPU."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only)


def all_reduce_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    if world.size > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def sync_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """Sum gradients over processes, flattened into one buffer (one message instead of one per tensor)."""
    if world.size == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
        offset += n


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def close(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
