"""A helper, not a benchmark: the baseline every training benchmark measures against: fine-tuning written the way a typical user
writes it with peft + transformers `Trainer`.

fp32 weights with mixed precision in the device's native dtype (`bf16=True` where the CPU computes bf16
natively or on CUDA, as the Trainer docs recommend; plain fp32 elsewhere, where bf16 is emulated; for qlora:
bitsandbytes NF4 + double quantization computing in that dtype and peft's `prepare_model_for_kbit_training`),
every example padded to `seq_len` with no packing, labels -100 on prompt and padding, logits for every position.
Only real (non-pad) tokens count; the first step is warm-up and is not timed.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

PEFT_METHODS = ("lora", "dora", "ia3", "qlora", "full")


def peft_config(method: str, lora: dict):
    from peft import IA3Config, LoraConfig

    if method == "ia3":
        return IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"],
                         task_type="CAUSAL_LM")
    return LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], target_modules=lora["target_modules"],
                      use_dora=method == "dora", task_type="CAUSAL_LM")


def load_baseline_model(method: str, path: str, lora: dict):
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from adaptlab.models import auto_dtype

    if method not in PEFT_METHODS:
        raise ValueError(f"no peft baseline for {method!r}; baselines exist for {', '.join(PEFT_METHODS)}")
    if method == "qlora":
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=auto_dtype())
        model = prepare_model_for_kbit_training(AutoModelForCausalLM.from_pretrained(path, quantization_config=quant))
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model if method == "full" else get_peft_model(model, peft_config(method, lora))


def peft_trainer_tok_s(method: str, model: str, records: list, seq_len: int, per_step: int, steps: int,
                       lora: dict, lr: float = 1e-4) -> dict:
    """Train `steps` + 1 steps of `per_step` padded examples; real tokens per second over the last `steps`."""
    import torch
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    from adaptlab.data.templates import tokenize_record
    from adaptlab.models.registry import resolve

    path, _ = resolve(model)
    tok = AutoTokenizer.from_pretrained(path)
    net = load_baseline_model(method, path, lora)
    rows = [tokenize_record(r, tok, max_len=seq_len) for r in records]
    real_tokens: list[int] = []

    def collate(batch):
        ids = torch.full((len(batch), seq_len), tok.pad_token_id)
        labels = torch.full((len(batch), seq_len), -100)
        mask = torch.zeros((len(batch), seq_len), dtype=torch.long)
        for i, ex in enumerate(batch):
            ids[i, : len(ex)] = torch.tensor(ex.input_ids)
            labels[i, : len(ex)] = torch.tensor(ex.labels)
            mask[i, : len(ex)] = 1
        real_tokens.append(int(mask.sum()))
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    args = TrainingArguments(output_dir="/tmp/adaptlab-bench-baseline", per_device_train_batch_size=per_step,
                             max_steps=steps + 1, learning_rate=lr, **trainer_args())
    clock = StepClock()
    Trainer(model=net, args=args, train_dataset=rows, data_collator=collate, callbacks=[clock]).train()
    return {**clock.throughput(real_tokens), "params": sum(p.numel() for p in net.parameters())}


def trainer_args() -> dict:
    """TrainingArguments every baseline shares: mixed precision in the native dtype, no saving or logging."""
    import torch

    from adaptlab.models import auto_dtype

    return {"bf16": auto_dtype() == torch.bfloat16, "logging_steps": 1000, "save_strategy": "no", "report_to": [],
            "use_cpu": not torch.cuda.is_available(), "dataloader_num_workers": 0, "remove_unused_columns": False,
            "disable_tqdm": True}


class StepClock(TrainerCallback):
    """Stamps the end of every optimizer step; the first step is warm-up and is not timed."""

    def __init__(self):
        self.stamps: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps.append(time.perf_counter())

    def throughput(self, step_tokens: list[int]) -> dict:
        """Real tokens per second over the steps after the first (`step_tokens`: tokens of each step)."""
        tokens = sum(step_tokens[1: len(self.stamps)])
        return {"tok_s": tokens / (self.stamps[-1] - self.stamps[0]), "tokens": tokens}
