"""This machine's dense matmul peak (GFLOP/s) in fp32 and bf16: the denominator of MFU.

    python benchmarks/matmul_peak.py [--quick]     last line: {"fp32_gflops": ..., "bf16_gflops": ..., ...}
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def matmul_gflops(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """Best sustained GFLOP/s of an n x n x n matmul (2 n^3 flops each) over ~`seconds`."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter measurement (< 10 s)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 5.0
    result = {"fp32_gflops": round(matmul_gflops(torch.float32, seconds=seconds), 1),
              "bf16_gflops": round(matmul_gflops(torch.bfloat16, seconds=seconds), 1),
              "threads": torch.get_num_threads(), "n": 2048, "quick": args.quick}
    result["bf16_over_fp32"] = round(result["bf16_gflops"] / result["fp32_gflops"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
