"""Speed and memory switches of a training run, and the run-time estimate shown at its start.

- mixed precision: autocast to the compute dtype; adapters keep fp32 weights, and peft's cast of every
  adapter input to the adapter's dtype is switched off inside autocast, which casts what each matmul needs
  anyway: a copy of the activations to fp32 and back per adapted layer (forward and backward) is saved.
- `compile`: each decoder layer runs through `torch.compile` (inductor; on CPU it generates C++ and needs
  a C++ compiler, gcc or clang). All layers share one code object, so one graph is compiled and reused;
  packed rows keep shapes fixed, so it compiles once per shape (the first step pays the compile time).
  `auto` turns it on only where compiled layers were measured faster (`COMPILE_FASTER`, by
  `benchmarks/train_throughput.py --compile`).
- packed attention (always, unless compiled): a packed row attends as one causal attention per sequence
  instead of one block-masked attention over the row (`train/attention.py`); compiled layers keep the mask,
  since per-sequence lengths would recompile them for every batch.
- fused RMSNorm and SwiGLU (always, unless compiled, where inductor fuses them itself): the same maths with less
  kept for backward and fewer passes (`train/fused.py`).
- `activation_checkpointing`: each decoder layer keeps only its input and recomputes its activations in
  backward (Chen et al. 2016, arXiv:1604.06174): activation memory O(layers x tokens x hidden) instead of
  O(layers x tokens x (hidden + intermediate + heads x tokens)), for about one more forward per step;
  `alternate` recomputes every other layer: about half the saving for half the extra forward.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator

import torch
from torch import nn

from adaptlab.methods.base import base_model_of
from adaptlab.models.device import cpu_kind
from adaptlab.train.attention import use_packed_attention
from adaptlab.train.fused import fuse_model

log = logging.getLogger(__name__)

# where `compile: auto` turns compiled decoder layers on: device kinds (`cpu_kind()` values or "cuda")
# on which benchmarks/train_throughput.py --compile measured them faster than eager (none measured yet)
COMPILE_FASTER: frozenset[str] = frozenset()


@contextlib.contextmanager
def mixed_precision(model: nn.Module, device_type: str, dtype: torch.dtype) -> Iterator[None]:
    """Autocast to `dtype` (off for fp32), without peft's fp32 round trip of adapter inputs."""
    enabled = dtype != torch.float32
    casting = [m for m in model.modules() if getattr(m, "cast_input_dtype_enabled", False)] if enabled else []
    for m in casting:
        m.cast_input_dtype_enabled = False
    try:
        with torch.autocast(device_type, dtype=dtype, enabled=enabled):
            yield
    finally:
        for m in casting:
            m.cast_input_dtype_enabled = True


def device_kind(device: torch.device) -> str:
    """`cuda`, or the CPU's kind (`amx`, `avx512_bf16`, `avx512`, `avx2`, `other`)."""
    return "cuda" if device.type == "cuda" else cpu_kind()


def want_compile(setting: bool | str, device: torch.device) -> bool:
    """Resolve `compile: true|false|auto`; on CPU inductor needs a C++ compiler, so `auto` without one is off."""
    if setting != "auto":
        return bool(setting)
    has_cxx = device.type == "cuda" or any(shutil.which(c) for c in ("g++", "c++", "clang++"))
    return has_cxx and device_kind(device) in COMPILE_FASTER


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a causal LM (through peft wrappers)."""
    inner = base_model_of(model)
    layers = getattr(getattr(inner, "model", inner), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(inner).__name__} has no `model.layers`: compile and activation checkpointing "
                         "need a decoder-only model with a layer list")
    return layers


def enable_checkpointing(model: nn.Module, mode: bool | str = True) -> int:
    """Recompute decoder layers' activations in backward (non-reentrant: frozen inputs are fine): every layer, or
    with `mode="alternate"` every other one. Returns how many layers recompute."""
    inner = base_model_of(model)
    enable = getattr(inner, "activation_checkpointing_enable", None)
    if enable is not None:
        enable({"use_reentrant": False})
    else:  # transformers < 5
        inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = decoder_layers(model)
    if mode == "alternate":
        for layer in layers[1::2]:
            layer.gradient_checkpointing = False
    return sum(bool(getattr(layer, "gradient_checkpointing", False)) for layer in layers)


def compile_layers(model: nn.Module) -> int:
    """Compile every decoder layer in place (`nn.Module.compile`); returns how many."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile()
    return len(layers)


def apply_speed_settings(model: nn.Module, compile: bool | str, checkpointing: bool | str,
                         device: torch.device) -> dict:
    """Apply the run's compile / activation-checkpointing switches and packed attention; returns what was applied
    (for the manifest)."""
    compiled = want_compile(compile, device)
    packed = not compiled and use_packed_attention(model)
    fused = {} if compiled else fuse_model(model)
    if checkpointing:
        log.info("activation checkpointing: %d decoder layers recompute in backward",
                 enable_checkpointing(model, checkpointing))
    if compiled:
        log.info("compiling %d decoder layers (torch.compile, inductor): the first step includes the compile time",
                 compile_layers(model))
    return {"compiled": compiled, "activation_checkpointing": checkpointing, "packed_attention": packed, "fused": fused}


def eta_message(step_seconds: float, steps_left: int, over_seconds: float = 180.0) -> str | None:
    """'about 13 min for the 99 steps left (8.4 s/step measured)' when the rest of the run exceeds
    `over_seconds`, else None."""
    total = step_seconds * steps_left
    if total <= over_seconds:
        return None
    when = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.0f} min"
    return f"about {when} for the {steps_left} steps left ({step_seconds:.1f} s/step measured)"
