"""Checkpoints written atomically and resumed exactly.

    <output_dir>/checkpoints/step-000050/
        trainable.safetensors   the trainable parameters (only those: a LoRA checkpoint stays small)
        optimizer.pt            optimizer + scheduler state (tensors and numbers; read with weights_only=True;
                                under fsdp the optimizer state is gathered whole and keyed by parameter name)
        state.json              step and the torch RNG state

Each checkpoint is written into a temporary folder, its files and the folder are fsync'd, and only then
is it renamed into place (and the parent folder fsync'd), so a run killed at any moment, or a power loss,
leaves either the previous checkpoint or the new one, never a `state.json` beside truncated tensors.
Temporary folders left by a killed run are removed at the next save. Only the last `keep_last` are kept.
Resuming takes the newest checkpoint that reads back whole and falls back to the one before otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from adaptlab.train.distributed import full_options, full_state_dict, is_sharded

log = logging.getLogger(__name__)

PREFIX = "step-"
TMP_PREFIX = ".tmp-"


def _optimizer_keys(optimizer_state: dict) -> str:
    """torch's optimizer.state_dict() keys parameters by index; the fsdp (gathered) form by name."""
    return "names" if any(isinstance(k, str) for k in optimizer_state.get("state", {})) else "ids"


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints (renamed into place, with state.json), oldest first."""
    root = checkpoint_dir(output_dir)
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").exists())


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    done = checkpoints(output_dir)
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


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's contents (a folder: its entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(root: Path) -> None:
    """Temporary folders left by a run killed while saving (only the main process saves, one at a time)."""
    for stale in root.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)


def save_checkpoint(output_dir: str | Path, step: int, params: dict[str, torch.Tensor], optimizer_state: dict,
                    scheduler, keep_last: int) -> Path:
    root = checkpoint_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=root))
    try:
        save_file({n: t.contiguous() for n, t in params.items()}, tmp / "trainable.safetensors")
        torch.save({"optimizer": optimizer_state, "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        state = {"step": step, "torch_rng": torch.get_rng_state().tolist(), "optimizer_keys": _optimizer_keys(optimizer_state)}
        (tmp / "state.json").write_text(json.dumps(state))
        for name in ("trainable.safetensors", "optimizer.pt", "state.json", "."):
            _fsync(tmp / name)
        final = root / f"{PREFIX}{step:06d}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(p for p in root.iterdir() if p.name.startswith(PREFIX))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


# what reading a truncated or corrupted checkpoint raises
_UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError, SafetensorError)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(trainable tensors, optimizer + scheduler state, state.json), read whole before anything is restored."""
    return (load_file(path / "trainable.safetensors"),
            torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"),
            json.loads((path / "state.json").read_text()))


def resume_latest(output_dir: str | Path, model: nn.Module, optimizer, scheduler) -> tuple[Path, int] | None:
    """Restore the newest checkpoint that reads back whole; an unreadable one (truncated by a crash) is
    skipped with a warning for the one before. Returns (checkpoint, step), or None when there is none."""
    found = checkpoints(output_dir)
    for path in reversed(found):
        try:
            contents = read_checkpoint(path)
        except _UNREADABLE as e:
            log.warning("checkpoint %s is unreadable (%s: %s); trying the previous one", path, type(e).__name__, e)
            continue
        return path, restore_checkpoint(path, contents, model, optimizer, scheduler)
    if found:
        raise ValueError(f"no readable checkpoint in {checkpoint_dir(output_dir)} ({len(found)} found, all unreadable)")
    return None


def restore_checkpoint(path: Path, contents: tuple[dict, dict, dict], model: nn.Module, optimizer, scheduler) -> int:
    """Put what `read_checkpoint` read into the model, optimizer, scheduler and RNG; return the step."""
    params, opt, state = contents
    named = dict(model.named_parameters())
    missing = [n for n in params if n not in named]
    if missing:
        raise ValueError(f"checkpoint {path} does not match this model/method (unknown parameters: {missing[:3]})")
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
