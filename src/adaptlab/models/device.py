"""Pick the device and dtype a run uses when the user says `auto`.

`auto` is bf16 only where the hardware computes it natively, else fp32 (fp16 on CUDA without bf16):

| CPU kind | flags (/proc/cpuinfo) | native dtype |
|---|---|---|
| Intel Sapphire Rapids and later | `amx_bf16` | bf16 (AMX tiles) |
| Intel Cooper Lake, AMD Zen 4/5 | `avx512_bf16` | bf16 (AVX-512 BF16 dot products) |
| AVX2 / plain AVX-512 (AMD Zen 2/3, older Xeons) | neither | fp32 (bf16 is emulated, far slower) |

Where /proc/cpuinfo cannot be read (not Linux), oneDNN's own bf16 check decides. `ADAPTLAB_CPU_KIND` (one of
`KINDS`) overrides the detection. Together with the libraries' own ISA caps it makes a machine compute as another
kind does; an AVX2-only CPU, for instance:

    ADAPTLAB_CPU_KIND=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python ...
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty where unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


KINDS = ("amx", "avx512_bf16", "avx512", "avx2", "other")


@functools.cache
def cpu_kind() -> str:
    """The CPU's fastest matmul path: `amx`, `avx512_bf16`, `avx512`, `avx2` or `other` (or `ADAPTLAB_CPU_KIND`)."""
    if forced := os.environ.get("ADAPTLAB_CPU_KIND"):
        if forced not in KINDS:
            raise ValueError(f"ADAPTLAB_CPU_KIND={forced!r}: choose one of {', '.join(KINDS)}")
        return forced
    flags = cpu_flags()
    if not flags:
        return "avx512_bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "other"
    for kind, flag in (("amx", "amx_bf16"), ("avx512_bf16", "avx512_bf16"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in flags:
            return kind
    return "other"


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX), so bf16 is faster than fp32."""
    return cpu_kind() in ("amx", "avx512_bf16")


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


def total_memory_mb(device: torch.device) -> float:
    """The device's memory: GPU memory on CUDA, physical RAM otherwise."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1] / 2**20
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
