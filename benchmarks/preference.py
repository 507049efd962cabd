"""Preference training throughput: adaptlab's DPO and reward objectives vs trl 1.16's DPOTrainer and RewardTrainer.

Same model (builtin SmolLM2-135M), same HH-RLHF harmless-base pairs, same LoRA (r 16 on every linear layer),
same maximum sequence length and pairs per optimizer step, compute in the CPU's native dtype on both sides
(`adaptlab.models.auto_dtype`: fp32 where bf16 is emulated). trl runs as a knowledgeable user sets it up:
reference log-probs precomputed once (`precompute_ref_log_probs=True`, as adaptlab does), its fused LM head,
padded batches (its padding-free mode needs FlashAttention). adaptlab packs each step's chosen and rejected
sequences into rows and computes log-probs only at response tokens, chunk by chunk. The reward side compares
a scalar head on the LoRA-wrapped base (ours) with trl's AutoModelForSequenceClassification + LoRA.
trl 1.16's configs turn gradient checkpointing on by default and the baseline keeps that default
(`baseline_checkpointing`): its peak memory is a checkpointed one, paid for with about one more forward per
step. `--checkpointing` also times ours with `activation_checkpointing: true`, the like-for-like memory figure,
and with `alternate` (every other layer recomputed).
Only real (non-pad) tokens count; each side runs in its own process (peak RSS is per process; lib/procs.py);
the first step is warm-up and is not timed; reference log-probs and data preparation are outside the timing.

    python benchmarks/preference.py [--quick] [--checkpointing]
    last line: {"dpo": {"ours_tok_s", "baseline_tok_s", "ratio", "ours_peak_mb", "baseline_peak_mb",
                        "baseline_checkpointing", ["checkpointing_tok_s", ..., "alternate_checkpointing_tok_s", ...]},
             "reward": {...}}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lib.peft_trainer import StepClock, trainer_args
from lib.procs import in_process, peak_mb

MODEL = "smollm2-135m"
DATA = "hh-rlhf-harmless"
# ours checkpointed (`--checkpointing`): recipe value -> JSON key prefix
CHECKPOINTING = {True: "checkpointing", "alternate": "alternate_checkpointing"}
LORA = {"r": 16, "alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def native_dtype() -> str:
    from adaptlab.models import auto_dtype

    return str(auto_dtype()).removeprefix("torch.")


def run_ours(objective: str, pairs: int, steps: int, seq_len: int, checkpointing: bool | str, queue) -> None:
    from adaptlab.config import TrainConfig
    from adaptlab.train.loop import Trainer

    cfg = TrainConfig(model=MODEL, objective=objective, method={"name": "lora", **LORA}, dtype=native_dtype(),
                      data={"train": DATA, "limit": pairs * (steps + 1), "eval_fraction": 0.0},
                      optim={"lr": 1e-5, "warmup_steps": 0}, seq_len=seq_len, batch_size=pairs, max_steps=steps + 1,
                      eval_every=0, save_every=0, output_dir=f"/tmp/adaptlab-bench-{objective}", loggers=[],
                      dpo={"cache_reference": False}, activation_checkpointing=checkpointing)
    trainer = Trainer(cfg)
    trainer.setup()
    trainer.train_step(0)  # warm-up
    tokens, t0 = 0, time.perf_counter()
    for step in range(1, steps + 1):
        tokens += trainer.train_step(step)[1]
    queue.put({"tok_s": tokens / (time.perf_counter() - t0), "peak_mb": peak_mb(), "tokens": tokens})


def trl_rows(n: int) -> list[dict]:
    """The same pairs in trl's conversational layout."""
    from adaptlab.data import load_records

    return [{"prompt": r.prompt, "chosen": [{"role": "assistant", "content": r.chosen}],
             "rejected": [{"role": "assistant", "content": r.rejected}]} for r in load_records(DATA, limit=n)]


def counting(collator, real_tokens: list[int]):
    def collate(batch):
        out = collator(batch)
        real_tokens.append(int(out["attention_mask"].sum()))
        return out
    return collate


def run_trl(objective: str, pairs: int, steps: int, seq_len: int, queue) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    from adaptlab.models.registry import resolve

    path, _ = resolve(MODEL)
    tok = AutoTokenizer.from_pretrained(path)
    data = Dataset.from_list(trl_rows(pairs * (steps + 1)))
    common = {"output_dir": f"/tmp/adaptlab-bench-trl-{objective}", "per_device_train_batch_size": pairs,
              "max_steps": steps + 1, "learning_rate": 1e-5, "max_length": seq_len, **trainer_args()}
    lora = {"r": LORA["r"], "lora_alpha": LORA["alpha"], "target_modules": LORA["target_modules"]}
    clock, real_tokens = StepClock(), []
    if objective == "dpo":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        trainer = DPOTrainer(model=model, args=DPOConfig(**common, beta=0.1, precompute_ref_log_probs=True),
                             processing_class=tok, train_dataset=data, peft_config=LoraConfig(**lora, task_type="CAUSAL_LM"),
                             callbacks=[clock])
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tok.pad_token_id
        trainer = RewardTrainer(model=model, args=RewardConfig(**common), processing_class=tok, train_dataset=data,
                                peft_config=LoraConfig(**lora, task_type="SEQ_CLS"), callbacks=[clock])
    trainer.data_collator = counting(trainer.data_collator, real_tokens)
    trainer.train()
    queue.put({**clock.throughput(real_tokens[-(steps + 1):]), "peak_mb": peak_mb(),
               "checkpointing": bool(trainer.args.gradient_checkpointing)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 pairs per step, 1 timed step, seq len 256 (< 50 s idle)")
    parser.add_argument("--checkpointing", action="store_true",
                        help="also time ours with activation checkpointing, every layer (trl's default, which its memory "
                        "reflects) and every other layer")
    args = parser.parse_args()
    start = time.perf_counter()
    pairs, steps, seq_len = (2, 1, 256) if args.quick else (8, 4, 512)
    out: dict = {"model": MODEL, "data": DATA, "pairs_per_step": pairs, "timed_steps": steps, "seq_len": seq_len,
                 "dtype": native_dtype(), "quick": args.quick}
    for objective in ("dpo", "reward"):
        ours = in_process(run_ours, objective, pairs, steps, seq_len, False)
        base = in_process(run_trl, objective, pairs, steps, seq_len)
        row = {"ours_tok_s": round(ours["tok_s"], 1), "baseline_tok_s": round(base["tok_s"], 1),
               "ratio": round(ours["tok_s"] / base["tok_s"], 2), "ours_peak_mb": round(ours["peak_mb"]),
               "baseline_peak_mb": round(base["peak_mb"]), "baseline_checkpointing": base["checkpointing"]}
        for mode, prefix in CHECKPOINTING.items() if args.checkpointing else ():
            ckpt = in_process(run_ours, objective, pairs, steps, seq_len, mode)
            row.update({f"{prefix}_tok_s": round(ckpt["tok_s"], 1), f"{prefix}_ratio": round(ckpt["tok_s"] / base["tok_s"], 2),
                        f"{prefix}_peak_mb": round(ckpt["peak_mb"])})
        out[objective] = row
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
