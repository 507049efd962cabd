"""A helper, not a benchmark: the strongest baseline the training benchmarks measure against: trl's
`SFTTrainer` as a knowledgeable user runs it.

Packing (best-fit decreasing) into rows of `seq_len` with padding-free batches (no pad tokens, position ids
restart per example), completion-only loss (the prompt carries no loss), the same LoRA through peft; weights
in the native dtype for adapters (the frozen base in bf16 where the CPU computes it, else fp32) and fp32
master weights for full fine-tuning, mixed precision in the native dtype (lib/peft_trainer.trainer_args).
The examples are the ones adaptlab trains on, tokenized by adaptlab's template and handed over as
`input_ids` + `completion_mask`, so both sides see the same tokens. trl's own defaults stay, gradient
checkpointing included (on in trl 1.16: less memory for about one more forward per step); `checkpointing` in the
result says whether it ran. Only real tokens count; the first step is
warm-up and is not timed.
"""

from __future__ import annotations

from lib.peft_trainer import StepClock, peft_config, trainer_args


def trl_sft_tok_s(method: str, model: str, records: list, seq_len: int, rows: int, steps: int, lora: dict,
                  lr: float = 1e-4) -> dict:
    """Train `steps` + 1 steps of `rows` packed rows of `seq_len`; real tokens per second over the last `steps`."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from adaptlab.data.templates import IGNORE, tokenize_record
    from adaptlab.models import auto_dtype
    from adaptlab.models.registry import resolve

    path, _ = resolve(model)
    tok = AutoTokenizer.from_pretrained(path)
    net = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32 if method == "full" else auto_dtype())
    examples = [tokenize_record(r, tok, max_len=seq_len) for r in records]
    data = Dataset.from_list([{"input_ids": e.input_ids, "completion_mask": [int(y != IGNORE) for y in e.labels]}
                              for e in examples])
    args = SFTConfig(output_dir="/tmp/adaptlab-bench-trl", per_device_train_batch_size=rows, max_steps=steps + 1,
                     learning_rate=lr, max_length=seq_len, packing=True, padding_free=True,
                     completion_only_loss=True, dataset_num_proc=None, **trainer_args())
    clock = StepClock()
    trainer = SFTTrainer(model=net, args=args, train_dataset=data, processing_class=tok, callbacks=[clock],
                         peft_config=None if method == "full" else peft_config(method, lora))
    step_tokens: list[int] = []
    collate = trainer.data_collator

    def counting(batch):
        out = collate(batch)
        step_tokens.append(int(out["input_ids"].numel()))  # padding-free: every token is real
        return out

    trainer.data_collator = counting
    trainer.train()
    return {**clock.throughput(step_tokens), "params": sum(p.numel() for p in trainer.model.parameters()),
            "checkpointing": bool(trainer.args.gradient_checkpointing)}
