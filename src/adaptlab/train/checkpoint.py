"""Checkpoints written atomically and resumed exactly.

    <output_dir>/checkpoints/step-000050/
        trainable.safetensors   the trainable parameters (only those: a LoRA checkpoint stays small)
        optimizer.pt            optimizer + scheduler state (tensors and numbers; read with weights_only=True;
                                under fsdp the optimizer state is gathered whole and keyed by parameter name)
        state.json              step and the torch RNG state

Each checkpoint is written into a temporary folder and renamed into place, so a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one. Only the last
`keep_last` are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from adaptlab.train.distributed import full_options, full_state_dict, is_sharded

PREFIX = "step-"


def _optimizer_keys(optimizer_state: dict) -> str:
    """torch's optimizer.state_dict() keys parameters by index; the fsdp (gathered) form by name."""
    return "names" if any(isinstance(k, str) for k in optimizer_state.get("state", {})) else "ids"


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    root = checkpoint_dir(output_dir)
    if not root.exists():
        return None
    done = sorted(p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").exists())
    return done[-1] if done else None


def trainable_state(model: nn.Module, optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The trainable parameters by name and the optimizer state, whole. Under fsdp this gathers the
    shards (every process must call it; the main process gets the tensors)."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        params = {n: t for n, t in full_state_dict(model, trainable_only=True).items() if n in trainable}
        return params, get_optimizer_state_dict(model, optimizer, options=full_options())
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}, optimizer.state_dict()


def save_checkpoint(output_dir: str | Path, step: int, params: dict[str, torch.Tensor], optimizer_state: dict,
                    scheduler, keep_last: int) -> Path:
    root = checkpoint_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        save_file({n: t.contiguous() for n, t in params.items()}, tmp / "trainable.safetensors")
        torch.save({"optimizer": optimizer_state, "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        state = {"step": step, "torch_rng": torch.get_rng_state().tolist(), "optimizer_keys": _optimizer_keys(optimizer_state)}
        (tmp / "state.json").write_text(json.dumps(state))
        final = root / f"{PREFIX}{step:06d}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(p for p in root.iterdir() if p.name.startswith(PREFIX))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler) -> int:
    """Restore trainable weights, optimizer, scheduler and RNG; return the step to continue from."""
    params = load_file(path / "trainable.safetensors")
    named = dict(model.named_parameters())
    missing = [n for n in params if n not in named]
    if missing:
        raise ValueError(f"checkpoint {path} does not match this model/method (unknown parameters: {missing[:3]})")
    opt = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    state = json.loads((path / "state.json").read_text())
    wanted = "names" if is_sharded(model) else "ids"
    if state.get("optimizer_keys", "ids") != wanted:
        raise ValueError(f"checkpoint {path} was written with parallel={'fsdp' if wanted == 'ids' else 'ddp'}; "
                         "resume it with the same `parallel` setting")
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        set_model_state_dict(model, params, options=full_options())
        set_optimizer_state_dict(model, optimizer, opt["optimizer"], options=full_options())
    else:
        with torch.no_grad():
            for n, t in params.items():
                named[n].copy_(t)
        optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    return int(state["step"])
