"""The device a plan is for (its memory and dense matmul peak), and `plan()`: every method's estimate on it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from adaptlab.memplan.estimate import DEQUANT_SLOWDOWN, EFFICIENCY, Estimate, Settings, estimate
from adaptlab.memplan.methods import method_cost
from adaptlab.memplan.shapes import ModelShape
from adaptlab.methods import METHODS
from adaptlab.models.device import auto_device, auto_dtype, total_memory_mb

DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
ORDER = ("full", "lora", "dora", "ia3", "qlora", "qalora", "loftq")  # the table's rows: costliest base first


@dataclass(frozen=True)
class Device:
    type: str                 # cpu | cuda
    name: str
    memory_mb: float          # RAM on CPU, the GPU's memory on CUDA
    gflops: float             # dense matmul peak in the compute dtype (measured or given)


def matmul_gflops(dtype: torch.dtype, device: torch.device | None = None, n: int = 2048,
                  seconds: float = 2.0) -> float:
    """Best sustained GFLOP/s of an n x n x n matmul (2 n^3 flops each) over ~`seconds` on `device` (CPU default)."""
    device = device or torch.device("cpu")
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        a @ b
        sync()
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def detect(dtype: str = "auto", gflops: float | None = None, memory_gb: float | None = None,
           device: str = "auto") -> tuple[Device, str]:
    """This machine's device and the resolved compute dtype; the matmul peak is measured (~1 s) unless given."""
    dev = auto_device(device)
    compute = auto_dtype(dtype, dev)
    if gflops is None:
        gflops = matmul_gflops(compute, dev, n=1024 if dev.type == "cpu" else 4096, seconds=0.5)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        from adaptlab.train.manifest import hardware
        name = hardware()["cpu"]
    memory = memory_gb * 1024 if memory_gb is not None else total_memory_mb(dev)
    return Device(dev.type, name, memory, gflops), DTYPE_NAMES[compute]


@dataclass
class PlanRow:
    estimate: Estimate
    step_s: float
    fits: bool


def plan(shape: ModelShape, methods: list[str] | None, settings: Settings, device: Device) -> list[PlanRow]:
    """Every method's (or `methods`') estimate on `device`: peak, time per step, and whether it fits."""
    rows = []
    for name in methods or sorted(METHODS, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m)):
        est = estimate(shape, name, settings, device.type)
        step_s = est.flops / (device.gflops * 1e9 * EFFICIENCY[device.type])
        if method_cost(name).quantized:
            step_s *= DEQUANT_SLOWDOWN[device.type]
        rows.append(PlanRow(est, step_s, est.needed_mb <= device.memory_mb))
    return rows
