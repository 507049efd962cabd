"""Checkpoints written atomically and resumed exactly.

    <output_dir>/checkpoints/step-000050/
        trainable.safetensors   the trainable parameters (only those: a LoRA checkpoint stays small)
        optimizer.pt            optimizer + scheduler state (tensors and numbers; read with weights_only=True)
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

PREFIX = "step-"


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    root = checkpoint_dir(output_dir)
    if not root.exists():
        return None
    done = sorted(p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").exists())
    return done[-1] if done else None


def save_checkpoint(output_dir: str | Path, step: int, model: nn.Module, optimizer, scheduler, keep_last: int) -> Path:
    root = checkpoint_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        params = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(params, tmp / "trainable.safetensors")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        state = {"step": step, "torch_rng": torch.get_rng_state().tolist()}
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
    with torch.no_grad():
        for n, t in params.items():
            named[n].copy_(t)
    opt = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    state = json.loads((path / "state.json").read_text())
    torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    return int(state["step"])
