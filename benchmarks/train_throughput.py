"""Training throughput: adaptlab vs the way a typical user writes it (peft + transformers Trainer).

Same model (builtin SmolLM2-135M), same GSM8K examples (real, variable length), seq len 512, about the
same real tokens per optimizer step (the baseline's 8 padded examples ~ adaptlab's 3 packed rows of 512),
bf16 compute on both sides. The baseline pads every example to 512
tokens with no packing and computes logits for every position (`Trainer` + `DataCollatorWithPadding`
style). adaptlab packs, keeps the frozen base in bf16 and computes logits only at response tokens.
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
from matmul_peak import matmul_gflops  # noqa: E402

MODEL = "smollm2-135m"
SEQ_LEN = 512
EXAMPLES_PER_STEP = 8
LORA = {"r": 16, "alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(method: str, n_examples: int, steps: int, queue) -> None:
    from adaptlab.config import TrainConfig
    from adaptlab.train.loop import Trainer

    # packed rows of 512 tokens; gsm8k examples average ~170 tokens, so 3 rows hold ~8 examples
    cfg = TrainConfig(model=MODEL, method={"name": method, **(LORA if method == "lora" else {})},
                      data={"train": "gsm8k", "limit": 2 * n_examples, "eval_fraction": 0.0},
                      optim={"lr": 1e-4, "warmup_steps": 0}, seq_len=SEQ_LEN, batch_size=3, grad_accum=1,
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


def run_baseline(method: str, n_examples: int, steps: int, queue) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from adaptlab.data import load_records
    from adaptlab.data.templates import tokenize_record
    from adaptlab.models.registry import resolve

    path, _ = resolve(MODEL)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"],
                                                 target_modules=LORA["target_modules"], task_type="CAUSAL_LM"))
    records = load_records("gsm8k", limit=n_examples)
    rows = [tokenize_record(r, tok, max_len=SEQ_LEN) for r in records]
    real_tokens: list[int] = []

    def collate(batch):
        # what most user scripts do: pad to max_length, labels = -100 on prompt and padding
        ids = torch.full((len(batch), SEQ_LEN), tok.pad_token_id)
        labels = torch.full((len(batch), SEQ_LEN), -100)
        mask = torch.zeros((len(batch), SEQ_LEN), dtype=torch.long)
        for i, ex in enumerate(batch):
            ids[i, : len(ex)] = torch.tensor(ex.input_ids)
            labels[i, : len(ex)] = torch.tensor(ex.labels)
            mask[i, : len(ex)] = 1
        real_tokens.append(int(mask.sum()))
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    args = TrainingArguments(output_dir="/tmp/adaptlab-bench-baseline", per_device_train_batch_size=EXAMPLES_PER_STEP,
                             max_steps=steps + 1, learning_rate=1e-4, bf16=True, logging_steps=1000,
                             save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
                             remove_unused_columns=False, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Clock()]).train()
    seconds = stamps[-1] - stamps[0]
    tokens = sum(real_tokens[1: len(stamps)])  # steps after the first
    queue.put({"tok_s": tokens / seconds, "peak_mb": peak_mb(), "tokens": tokens})


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
    parser.add_argument("--quick", action="store_true", help="2 timed steps per side (< 50 s on an idle 2-core CPU)")
    parser.add_argument("--methods", default="lora,full")
    args = parser.parse_args()
    steps = 2 if args.quick else 8
    n_examples = EXAMPLES_PER_STEP * (steps + 1)
    peak = matmul_gflops(__import__("torch").bfloat16, seconds=1.0 if args.quick else 3.0) * 1e9
    out: dict = {"model": MODEL, "seq_len": SEQ_LEN, "examples_per_step": EXAMPLES_PER_STEP, "timed_steps": steps,
                 "bf16_peak_gflops": round(peak / 1e9, 1), "quick": args.quick}
    for method in args.methods.split(","):
        ours = in_process(run_ours, method, n_examples, steps)
        base = in_process(run_baseline, method, n_examples, steps)
        flops_per_token = (6 if method == "full" else 4) * ours["params"]
        out[method] = {"ours_tok_s": round(ours["tok_s"], 1), "baseline_tok_s": round(base["tok_s"], 1),
                       "ratio": round(ours["tok_s"] / base["tok_s"], 2), "ours_peak_mb": round(ours["peak_mb"]),
                       "baseline_peak_mb": round(base["peak_mb"]),
                       "mfu": round(ours["tok_s"] * flops_per_token / peak, 4),
                       "baseline_mfu": round(base["tok_s"] * flops_per_token / peak, 4)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
