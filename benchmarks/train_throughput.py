"""Training throughput: adaptlab vs the way a typical user writes it (peft + transformers Trainer).

Same model (builtin SmolLM2-135M), same GSM8K examples (real, variable length), seq len 512, about the
same real tokens per optimizer step (the baseline's 8 padded examples ~ adaptlab's 3 packed rows of 512),
bf16 compute on both sides. The baseline (benchmarks/lib/peft_trainer.py) pads every example to 512 tokens
with no packing and computes logits for every position. adaptlab packs, keeps the frozen base in bf16
and computes logits only at response tokens.
Only real (non-pad) tokens count. Each side runs in its own process (peak memory is per process);
the first step of each side is warm-up and is not timed.

MFU = tokens/s x flops per token / measured bf16 matmul peak, with flops per token
6 N (full fine-tuning: forward 2N, backward 4N) or 4 N (adapters: the frozen weights need no weight
gradient), N = parameters in the matmuls (attention score flops ignored; small at 512 tokens).

    python benchmarks/train_throughput.py [--quick]
    last line: {"lora": {"ours_tok_s", "baseline_tok_s", "ratio", "ours_peak_mb", "baseline_peak_mb", "mfu"}, "full": {...}}
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lib.peft_trainer import peft_trainer_tok_s
from matmul_peak import matmul_gflops

MODEL = "smollm2-135m"
SEQ_LEN = 512
EXAMPLES_PER_STEP = 8
LORA = {"r": 16, "alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(method: str, n_examples: int, steps: int, rows: int, queue) -> None:
    from adaptlab.config import TrainConfig
    from adaptlab.train.loop import Trainer

    # packed rows of 512 tokens; gsm8k examples average ~170 tokens, so 3 rows hold ~8 examples (1 row ~3)
    cfg = TrainConfig(model=MODEL, method={"name": method, **(LORA if method == "lora" else {})},
                      data={"train": "gsm8k", "limit": 2 * n_examples, "eval_fraction": 0.0},
                      optim={"lr": 1e-4, "warmup_steps": 0}, seq_len=SEQ_LEN, batch_size=rows, grad_accum=1,
                      max_steps=steps + 1, eval_every=0, save_every=0, output_dir="/tmp/adaptlab-bench-ours",
                      loggers=[])
    trainer = Trainer(cfg)
    trainer.setup()
    trainer.train_step(0)  # warm-up
    tokens, t0 = 0, time.perf_counter()
    for step in range(1, steps + 1):
        tokens += trainer.train_step(step)[1]
    seconds = time.perf_counter() - t0
    queue.put({"tok_s": tokens / seconds, "peak_mb": peak_mb(), "tokens": tokens,
               "params": sum(p.numel() for p in trainer.model.parameters())})


def run_baseline(method: str, n_examples: int, steps: int, per_step: int, queue) -> None:
    from adaptlab.data import load_records

    result = peft_trainer_tok_s(method, MODEL, load_records("gsm8k", limit=n_examples), SEQ_LEN, per_step, steps, LORA)
    queue.put({**result, "peak_mb": peak_mb()})


def in_process(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="LoRA only, 2 examples (1 packed row) per step, 1 timed step per side (< 50 s)")
    parser.add_argument("--methods", default=None, help="comma-separated: lora,full (default both; --quick: lora)")
    args = parser.parse_args()
    start = time.perf_counter()
    methods = (args.methods or ("lora" if args.quick else "lora,full")).split(",")
    steps = 1 if args.quick else 8
    per_step, rows = (2, 1) if args.quick else (EXAMPLES_PER_STEP, 3)
    n_examples = per_step * (steps + 1)
    peak = matmul_gflops(__import__("torch").bfloat16, seconds=0.5 if args.quick else 3.0) * 1e9
    out: dict = {"model": MODEL, "seq_len": SEQ_LEN, "examples_per_step": per_step, "timed_steps": steps,
                 "bf16_peak_gflops": round(peak / 1e9, 1), "quick": args.quick}
    for method in methods:
        ours = in_process(run_ours, method, n_examples, steps, rows)
        base = in_process(run_baseline, method, n_examples, steps, per_step)
        flops_per_token = (6 if method == "full" else 4) * ours["params"]
        out[method] = {"ours_tok_s": round(ours["tok_s"], 1), "baseline_tok_s": round(base["tok_s"], 1),
                       "ratio": round(ours["tok_s"] / base["tok_s"], 2), "ours_peak_mb": round(ours["peak_mb"]),
                       "baseline_peak_mb": round(base["peak_mb"]),
                       "mfu": round(ours["tok_s"] * flops_per_token / peak, 4),
                       "baseline_mfu": round(base["tok_s"] * flops_per_token / peak, 4)}
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
