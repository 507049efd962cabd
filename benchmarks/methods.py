"""Every adaptation method on the same model, data and steps: cost and quality side by side.

For each method: trainable parameters and share, bytes per frozen-base parameter, peak RSS while
training, tokens/s (real tokens, after one warm-up step), eval loss before training (what quantizing the
base costs) and after the timed steps -- trained by
adaptlab's own engine (`adaptlab.train.Trainer`) on packed rows. Baselines in the same run, on the same
GSM8K examples written the way a typical user writes them (benchmarks/lib/peft_trainer.py: peft + transformers
`Trainer`, padding to seq_len, no packing): lora, dora and ia3 through peft, qlora through peft +
bitsandbytes (`BitsAndBytesConfig(load_in_4bit, nf4, double quant)`, `prepare_model_for_kbit_training`).
ratio = tok_s / baseline_tok_s. For lora and full also the strongest baseline (benchmarks/lib/trl_sft.py: trl
`SFTTrainer`, packing + padding-free, completion-only loss, native dtype, the same packed rows per step):
strong_ratio = tok_s / strong_baseline_tok_s. Every side computes in the machine's native dtype (bf16 where
the CPU computes it natively or on CUDA, else fp32).

Full mode (default): SmolLM2-135M, each run in its own process so peak RSS is that run's own.
--quick (< 50 s): a tiny random Llama saved to a temp folder, fewer steps, all runs in this process
(peak RSS is then sampled during each run and includes what earlier runs left allocated).
Last line: one JSON object keyed by method name.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from lib.peft_trainer import peft_trainer_tok_s
from lib.trl_sft import trl_sft_tok_s

from adaptlab.methods.base import DEFAULT_TARGETS
from adaptlab.models import auto_dtype
from adaptlab.models.device import cpu_kind

METHODS = ["lora", "dora", "ia3", "qlora", "qalora", "loftq", "full"]
BASELINES = {m: m for m in ("lora", "dora", "ia3", "qlora", "full")}  # method -> its peft baseline (lib/peft_trainer.py)
STRONG = {"lora", "full"}  # methods with a trl SFTTrainer baseline (lib/trl_sft.py)
QUANT_TARGET = {"qlora", "qalora"}  # frozen base <= 0.30x the bf16 base


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Sample this process's resident memory every 20 ms; `.peak` is the highest seen inside the block."""

    def __enter__(self):
        self.peak, self._stop = rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def settings(quick: bool, model: str) -> dict:
    """Ours trains on `rows` packed rows of seq_len; the baseline on `per_step` padded examples: about the
    same real tokens per step (GSM8K examples average ~170 tokens)."""
    if quick:
        return {"model": model, "seq_len": 128, "rows": 1, "per_step": 2, "steps": 1, "limit": 16, "eval_max": 2}
    return {"model": model, "seq_len": 512, "rows": 3, "per_step": 8, "steps": 8, "limit": 200, "eval_max": 16}


def lora_settings(method: str, s: dict) -> dict:
    # the tiny model's 64 inputs / 16 per group leave 4 pooled channels for QA-LoRA, so rank 4 there
    return {"r": 4 if s.get("tiny") else 8, "alpha": 16, "target_modules": list(DEFAULT_TARGETS)}


def train_config(method: str, s: dict):
    from adaptlab.config import TrainConfig
    from adaptlab.methods import MethodConfig

    mcfg = MethodConfig(name=method, group_size=16 if s.get("tiny") else 64, **lora_settings(method, s))
    return TrainConfig(model=s["model"], method=mcfg, seq_len=s["seq_len"], batch_size=s["rows"],
                       max_steps=s["steps"] + 1, packing=True, seed=0, eval_every=0, save_every=0, loggers=[],
                       data={"train": "gsm8k", "limit": s["limit"], "eval_fraction": 0.2, "eval_max": s["eval_max"]},
                       optim={"lr": 3e-3 if method == "ia3" else 2e-4, "warmup_steps": 1},
                       output_dir=tempfile.mkdtemp(prefix=f"bench-{method}-"))


def run_ours(method: str, s: dict) -> dict:
    """adaptlab's engine: set up (quantizing where the method does), one warm-up step, `steps` timed
    steps, then the eval loss; footprint, peak RSS and tokens/s."""
    from adaptlab.train import Trainer

    with PeakRSS() as peak:
        trainer = Trainer(train_config(method, s))
        trainer.setup()
        start_loss = trainer.evaluate()   # before any step: what quantizing the base alone costs
        trainer.train_step(0)
        tokens, t0 = 0, time.perf_counter()
        for step in range(1, s["steps"] + 1):
            tokens += trainer.train_step(step)[1]
        seconds = time.perf_counter() - t0
        eval_loss = trainer.evaluate()
    fp = trainer.footprint
    return {"trainable_params": fp.trainable_params, "trainable_share": fp.trainable_share,
            "base_bytes_per_param": fp.base_bytes_per_param, "peak_mb": round(peak.peak, 1),
            "tok_s": tokens / seconds, "eval_loss_start": start_loss, "eval_loss": eval_loss}


def run_baseline(method: str, s: dict) -> dict:
    """peft (+ bitsandbytes for qlora) + transformers Trainer on the same examples, padded (lib/peft_trainer.py)."""
    from adaptlab.train.loop import split_records

    records = split_records(train_config(method, s))[0][: s["per_step"] * (s["steps"] + 1)]
    with PeakRSS() as peak:
        result = peft_trainer_tok_s(BASELINES[method], s["model"], records, s["seq_len"], s["per_step"], s["steps"],
                                    lora_settings(method, s), lr=2e-4)
    return {"tok_s": result["tok_s"], "peak_mb": round(peak.peak, 1)}


def run_strong(method: str, s: dict) -> dict:
    """trl SFTTrainer on the same examples, packed into the same rows per step (lib/trl_sft.py)."""
    from adaptlab.train.loop import split_records

    records = split_records(train_config(method, s))[0]
    with PeakRSS() as peak:
        result = trl_sft_tok_s(method, s["model"], records, s["seq_len"], s["rows"], s["steps"],
                               lora_settings(method, s), lr=2e-4)
    return {"tok_s": result["tok_s"], "peak_mb": round(peak.peak, 1)}


RUNNERS = {"ours": run_ours, "baseline": run_baseline, "strong": run_strong}


def layer_speed(reps: int = 5) -> dict:
    """ms per forward+backward (input grad) of one frozen 576->1536 layer on 512 tokens, best of two rounds:
    dense in the native dtype, adaptlab's NF4 QuantLinear, and bitsandbytes' Linear4bit (native and fp32 compute)."""
    import bitsandbytes as bnb

    from adaptlab.quant.layers import QuantLinear
    from adaptlab.quant.nf4 import quantize_nf4

    native = auto_dtype()
    torch.manual_seed(0)
    w = torch.randn(1536, 576) * 0.02
    x = torch.randn(512, 576, dtype=native, requires_grad=True)

    def linear4bit(dtype):
        layer = bnb.nn.Linear4bit(576, 1536, bias=False, compute_dtype=dtype, quant_type="nf4", compress_statistics=True)
        layer.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, quant_type="nf4", compress_statistics=True)
        return layer.to("cpu"), dtype

    dense = torch.nn.Linear(576, 1536, bias=False).to(native).requires_grad_(False)
    name = str(native).removeprefix("torch.").replace("bfloat16", "bf16").replace("float32", "fp32")
    layers = {f"{name}_dense": (dense, native), "adaptlab_nf4": (QuantLinear(quantize_nf4(w), dtype=native), native),
              f"bnb_linear4bit_{name}": linear4bit(native), "bnb_linear4bit_fp32": linear4bit(torch.float32)}
    best: dict[str, float] = {}
    for _ in range(2):
        for name, (layer, dtype) in layers.items():
            def step(layer=layer, dtype=dtype):
                layer(x.to(dtype)).float().sum().backward()
            step()
            t0 = time.perf_counter()
            for _ in range(reps):
                step()
            best[name] = min(best.get(name, float("inf")), (time.perf_counter() - t0) / reps * 1000)
    return {k: round(v, 2) for k, v in best.items()}


def in_subprocess(kind: str, method: str, s: dict) -> dict:
    """Run one measurement in a fresh process so its peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, "--worker", kind, method, "--settings", json.dumps(s)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["peak_mb"] = round(result.get("maxrss_mb", result.get("peak_mb", 0.0)), 1)
    result.pop("maxrss_mb", None)
    return result


def tiny_model_dir() -> str:
    from adaptlab.models import tiny_llama

    model, tok = tiny_llama(hidden=64, layers=2, intermediate=128)
    path = tempfile.mkdtemp(prefix="bench-tiny-")
    model.to(torch.bfloat16).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, in-process, < 50 s")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (after one warm-up step)")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, method = args.worker
        s = json.loads(args.settings)
        result = RUNNERS[kind](method, s)
        result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    start = time.perf_counter()
    s = settings(args.quick, tiny_model_dir() if args.quick else args.model)
    s["tiny"] = args.quick
    if args.steps:
        s["steps"] = args.steps
    measure = (lambda kind, m: RUNNERS[kind](m, s)) if args.quick else \
        (lambda kind, m: in_subprocess(kind, m, s))
    results = {}
    for method in args.methods.split(","):
        row = measure("ours", method)
        base = measure("baseline", method) if method in BASELINES else None
        row["baseline_tok_s"] = base.get("tok_s") if base else None
        row["baseline_peak_mb"] = base.get("peak_mb") if base else None
        if base and "error" in base:
            row["baseline_error"] = base["error"]
        row["ratio"] = row["tok_s"] / row["baseline_tok_s"] if row.get("tok_s") and row["baseline_tok_s"] else None
        if method in STRONG:
            strong = measure("strong", method)
            row["strong_baseline_tok_s"], row["strong_baseline_peak_mb"] = strong.get("tok_s"), strong.get("peak_mb")
            row["strong_ratio"] = row["tok_s"] / strong["tok_s"] if row.get("tok_s") and strong.get("tok_s") else None
            if "error" in strong:
                row["strong_baseline_error"] = strong["error"]
        results[method] = row
        print(f"# {method}: {json.dumps(row)}", file=sys.stderr, flush=True)
    lora_loss = results.get("lora", {}).get("eval_loss")
    for method, row in results.items():
        if lora_loss and row.get("eval_loss") and method in QUANT_TARGET | {"loftq"}:
            row["eval_loss_vs_lora"] = row["eval_loss"] / lora_loss
        if method in QUANT_TARGET and row.get("base_bytes_per_param"):
            row["base_vs_bf16"] = row["base_bytes_per_param"] / 2.0
    results["_layer_ms"] = layer_speed(reps=2 if args.quick else 5) if not torch.cuda.is_available() else None
    results["_meta"] = {"model": "tiny-llama (random)" if args.quick else args.model, "quick": args.quick,
                        "timed_steps": s["steps"], "seq_len": s["seq_len"], "packed_rows": s["rows"],
                        "baseline_examples_per_step": s["per_step"],
                        "torch_threads": torch.get_num_threads(), "device": "cuda" if torch.cuda.is_available() else "cpu",
                        "cpu_kind": cpu_kind(), "dtype": str(auto_dtype()).removeprefix("torch."),
                        "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
