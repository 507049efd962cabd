"""Training throughput: adaptlab vs the strongest baseline (trl `SFTTrainer`) and vs the way a typical user
writes it (peft + transformers `Trainer`).

Same model (builtin SmolLM2-135M), same GSM8K examples (real, variable length), seq len 512, the native
dtype of the machine on every side (bf16 where the CPU computes it natively, AVX-512 BF16 or AMX, or on
CUDA; fp32 elsewhere; see adaptlab.models.device):
- ours: 3 packed rows of 512 per step; the frozen base in the native dtype (fp32 master weights for full),
  logits only at response tokens (chunked fused linear cross-entropy).
- strong baseline (benchmarks/lib/trl_sft.py): trl SFTTrainer with packing + padding-free rows, completion-only
  loss, the same LoRA, 3 packed rows of 512 per step: the same tokens per step as ours.
- baseline (benchmarks/lib/peft_trainer.py): 8 examples per step padded to 512, no packing, logits everywhere
  (about the same real tokens per step). Skipped by --quick.
Only real (non-pad) tokens count. Each side runs in its own process (peak RSS is per process); the first step
of each side is warm-up (and compile) and is not timed.

MFU = tokens/s x flops per token / measured matmul peak in the native dtype, with flops per token 6 N (full
fine-tuning: forward 2N, backward 4N) or 4 N (adapters: the frozen weights need no weight gradient),
N = parameters in the matmuls (attention score flops ignored; small at 512 tokens).

--profile prints the top operators of our timed steps (torch.profiler, to stderr); --compile also times ours
with compiled decoder layers (recipe `compile: true`: tok/s, first-step seconds including compile, loss
difference to eager); --checkpointing also times ours with `activation_checkpointing: true` and `alternate`
(every other layer; their speed cost and peak RSS).

    python benchmarks/train_throughput.py [--quick] [--methods lora,full] [--steps 8] [--profile] [--compile]
                                          [--checkpointing]
    last line: {"lora": {"ours_tok_s", "strong_baseline_tok_s", "strong_ratio", "strong_baseline_peak_mb",
                         "baseline_tok_s", "ratio", "ours_peak_mb", "baseline_peak_mb", "mfu", ...}, "full": {...}}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lib.peft_trainer import peft_trainer_tok_s
from lib.procs import in_process, peak_mb
from lib.trl_sft import trl_sft_tok_s
from matmul_peak import matmul_gflops

MODEL = "smollm2-135m"
SEQ_LEN = 512
EXAMPLES_PER_STEP = 8
# ours checkpointed (`--checkpointing`): recipe value -> JSON key prefix
CHECKPOINTING = {True: "checkpointing", "alternate": "alternate_checkpointing"}
LORA = {"r": 16, "alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def timed_steps(trainer, steps: int, profile: bool) -> tuple[int, float, list[float], str | None]:
    """(tokens, seconds, losses, profiler table or None) over `steps` steps after the warm-up step."""
    import torch

    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if profile else None
    tokens, losses, t0 = 0, [], time.perf_counter()
    with prof or torch.autograd.profiler.record_function("steps"):
        for step in range(1, steps + 1):
            loss, n, _ = trainer.train_step(step)
            tokens, losses = tokens + n, [*losses, loss]
    seconds = time.perf_counter() - t0
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20) if prof else None
    return tokens, seconds, losses, table


def run_ours(method: str, n_examples: int, steps: int, rows: int, options: dict, queue) -> None:
    from adaptlab.config import TrainConfig
    from adaptlab.train.loop import Trainer

    # packed rows of 512 tokens; gsm8k examples average ~170 tokens, so 3 rows hold ~8 examples (1 row ~3)
    cfg = TrainConfig(model=MODEL, method={"name": method, **(LORA if method == "lora" else {})},
                      data={"train": "gsm8k", "limit": 2 * n_examples, "eval_fraction": 0.0},
                      optim={"lr": 1e-4, "warmup_steps": 0}, seq_len=SEQ_LEN, batch_size=rows, grad_accum=1,
                      max_steps=steps + 1, eval_every=0, save_every=0, output_dir="/tmp/adaptlab-bench-ours",
                      loggers=[], compile=options["compile"], activation_checkpointing=options["checkpointing"])
    trainer = Trainer(cfg)
    trainer.setup()
    t0 = time.perf_counter()
    first_loss = trainer.train_step(0)[0]  # warm-up (and compile)
    first_step_s = time.perf_counter() - t0
    tokens, seconds, losses, table = timed_steps(trainer, steps, options["profile"])
    queue.put({"tok_s": tokens / seconds, "peak_mb": peak_mb(), "tokens": tokens, "first_step_s": first_step_s,
               "losses": [first_loss, *losses], "profile": table,
               "params": sum(p.numel() for p in trainer.model.parameters())})


def run_baseline(method: str, n_examples: int, steps: int, per_step: int, queue) -> None:
    from adaptlab.data import load_records

    result = peft_trainer_tok_s(method, MODEL, load_records("gsm8k", limit=n_examples), SEQ_LEN, per_step, steps, LORA)
    queue.put({**result, "peak_mb": peak_mb()})


def run_strong(method: str, n_examples: int, steps: int, rows: int, queue) -> None:
    from adaptlab.data import load_records

    result = trl_sft_tok_s(method, MODEL, load_records("gsm8k", limit=2 * n_examples), SEQ_LEN, rows, steps, LORA)
    queue.put({**result, "peak_mb": peak_mb()})


def measure(method: str, args, n_examples: int, steps: int, rows: int, per_step: int, peak: float) -> dict:
    """One method: ours (and its compiled / checkpointed variants when asked) and the baselines."""
    plain = {"compile": False, "checkpointing": False, "profile": args.profile}
    ours = in_process(run_ours, method, n_examples, steps, rows, plain)
    if ours["profile"]:
        print(f"# {method}: top operators of our {steps} timed steps\n{ours['profile']}", file=sys.stderr)
    strong = in_process(run_strong, method, n_examples, steps, rows)
    flops_per_token = (6 if method == "full" else 4) * ours["params"]
    row = {"ours_tok_s": round(ours["tok_s"], 1), "ours_peak_mb": round(ours["peak_mb"]),
           "strong_baseline_tok_s": round(strong["tok_s"], 1), "strong_ratio": round(ours["tok_s"] / strong["tok_s"], 2),
           "strong_baseline_peak_mb": round(strong["peak_mb"]), "strong_baseline_checkpointing": strong["checkpointing"],
           "mfu": round(ours["tok_s"] * flops_per_token / peak, 4),
           "strong_baseline_mfu": round(strong["tok_s"] * flops_per_token / peak, 4)}
    if not args.quick:
        base = in_process(run_baseline, method, n_examples, steps, per_step)
        row.update(baseline_tok_s=round(base["tok_s"], 1), ratio=round(ours["tok_s"] / base["tok_s"], 2),
                   baseline_peak_mb=round(base["peak_mb"]), baseline_mfu=round(base["tok_s"] * flops_per_token / peak, 4))
    if args.compile:
        comp = in_process(run_ours, method, n_examples, steps, rows, {**plain, "compile": True, "profile": False})
        row.update(compiled_tok_s=round(comp["tok_s"], 1), compiled_speedup=round(comp["tok_s"] / ours["tok_s"], 2),
                   compile_first_step_s=round(comp["first_step_s"], 1), eager_first_step_s=round(ours["first_step_s"], 1),
                   compiled_max_loss_diff=max(abs(a - b) for a, b in zip(comp["losses"], ours["losses"])))
    for mode, prefix in CHECKPOINTING.items() if args.checkpointing else ():
        ckpt = in_process(run_ours, method, n_examples, steps, rows, {**plain, "checkpointing": mode, "profile": False})
        row.update({f"{prefix}_tok_s": round(ckpt["tok_s"], 1), f"{prefix}_peak_mb": round(ckpt["peak_mb"]),
                    f"{prefix}_slowdown": round(ours["tok_s"] / ckpt["tok_s"], 2)})
    return row


def main() -> None:
    import torch

    from adaptlab.models import auto_dtype
    from adaptlab.models.device import cpu_kind

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="LoRA only, 1 packed row (~3 examples) per step, "
                        "1 timed step, ours and the strong baseline only (< 50 s)")
    parser.add_argument("--methods", default=None, help="comma-separated: lora,full (default both; --quick: lora)")
    parser.add_argument("--profile", action="store_true", help="print our top operators (torch.profiler) to stderr")
    parser.add_argument("--compile", action="store_true", help="also time ours with compiled decoder layers")
    parser.add_argument("--checkpointing", action="store_true", help="also time ours with activation checkpointing")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per side (default 8; --quick: 1)")
    args = parser.parse_args()
    start = time.perf_counter()
    methods = (args.methods or ("lora" if args.quick else "lora,full")).split(",")
    steps = args.steps or (1 if args.quick else 8)
    per_step, rows = (2, 1) if args.quick else (EXAMPLES_PER_STEP, 3)
    n_examples = per_step * (steps + 1)
    dtype = auto_dtype()
    peak = matmul_gflops(dtype, seconds=0.5 if args.quick else 3.0) * 1e9
    out: dict = {"model": MODEL, "seq_len": SEQ_LEN, "packed_rows_per_step": rows, "examples_per_step": per_step,
                 "timed_steps": steps, "cpu_kind": "cuda" if torch.cuda.is_available() else cpu_kind(),
                 "threads": torch.get_num_threads(), "dtype": str(dtype).removeprefix("torch."),
                 "peak_gflops": round(peak / 1e9, 1), "quick": args.quick}
    for method in methods:
        out[method] = measure(method, args, n_examples, steps, rows, per_step, peak)
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
