"""Pick the device and dtype a run uses when the user says `auto`."""

from __future__ import annotations

import functools
from pathlib import Path

import torch


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX), so bf16 is faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_device(device: str = "auto") -> torch.device:
    """`auto` is CUDA when present, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def auto_dtype(dtype: str = "auto", device: torch.device | None = None) -> torch.dtype:
    """`auto` is bf16 where the device computes it natively, else fp32."""
    if dtype != "auto":
        names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                 "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}
        if dtype not in names:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of: auto, {', '.join(names)}")
        return names[dtype]
    device = device or auto_device()
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32
