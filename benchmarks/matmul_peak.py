"""This machine's dense matmul peak (GFLOP/s) in fp32 and bf16: the denominator of MFU.

    python benchmarks/matmul_peak.py [--quick]     last line: {"fp32_gflops": ..., "bf16_gflops": ..., ...}
"""

from __future__ import annotations

import argparse
import json

import torch

from adaptlab.memplan.device import matmul_gflops


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
