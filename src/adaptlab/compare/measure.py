"""What a cell measures, each a plain function: task score with its interval, forgetting, sizes, memory.

Forgetting (Biderman et al. 2024, "LoRA Learns Less and Forgets Less"; peft's method comparison) is
the change from the base model to the adapted one of (a) accuracy on a fixed MMLU slice and (b) the
mean token cross-entropy on a fixed general-text sample:  CE = - sum_t log p(x_t | x_<t) / #tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from adaptlab.compare.stats import interval
from adaptlab.eval.catalog import get_task
from adaptlab.eval.runner import ContextBuilder, ProgressFactory, evaluate_task
from adaptlab.eval.tasks import Task
from adaptlab.train.loop import peak_memory_mb as train_peak_mb
from adaptlab.train.manifest import hardware as manifest_hardware
from adaptlab.train.manifest import library_versions as versions  # noqa: F401  (cell records call measure.versions)


@dataclass
class Score:
    metric: str
    score: float                    # percent
    low: float                      # 95% interval, percent
    high: float
    n: int
    seconds: float

    def as_dict(self) -> dict:
        return {"metric": self.metric, "score": self.score, "interval": [self.low, self.high], "n": self.n,
                "seconds": round(self.seconds, 3)}


def score_task(model, tokenizer, task: str | Task, limit: int | None = None, shots: int | None = None,
               chat_template: bool = True, progress: ProgressFactory | None = None,
               context_builder: ContextBuilder | None = None) -> Score:
    """Score `task` (a registry name, custom task YAML or `Task`) through the one evaluation path, with a 95%
    interval over its items; a route's `context_builder` (e.g. retrieved sources) builds the prompts."""
    spec = get_task(task) if isinstance(task, str) else task
    protocol = spec.protocol(shots=shots, chat_template=chat_template, limit=limit, seed=0)
    result = evaluate_task(model, tokenizer, spec, protocol, context_builder, progress=progress)
    low, high = interval(result.per_sample())
    return Score(result.metric, result.score, 100 * low, 100 * high, result.n, result.seconds)


def general_text(passages: int) -> list[str]:
    """A fixed general-text sample: the first Alpaca seed tasks, instruction and answer as plain text."""
    from adaptlab.data.builtin import read_rows

    out = []
    for row in read_rows("alpaca/seed_tasks.jsonl.gz"):
        inst = row["instances"][0]
        out.append("\n".join(t for t in (row["instruction"], inst.get("input", ""), inst["output"]) if t))
        if len(out) == passages:
            break
    return out


@torch.no_grad()
def text_cross_entropy(model, tokenizer, texts: list[str], max_len: int = 256) -> float:
    """Mean next-token cross-entropy (nats per token) over `texts`, each truncated to `max_len` tokens."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_len).input_ids.to(device)
        if ids.shape[1] < 2:
            continue
        logits = model(input_ids=ids).logits[0, :-1].float()
        total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
        count += ids.shape[1] - 1
    return total / max(count, 1)


def forgetting_probe(model, tokenizer, mmlu_items: int, passages: int) -> dict:
    """General-knowledge accuracy on a fixed MMLU slice (0-shot) and cross-entropy on general text."""
    start = time.perf_counter()
    out: dict = {}
    if mmlu_items:
        mmlu = score_task(model, tokenizer, "mmlu", limit=mmlu_items, shots=0, chat_template=False)
        out.update(mmlu_acc=mmlu.score, mmlu_interval=[mmlu.low, mmlu.high], mmlu_n=mmlu.n)
    if passages:
        out["text_ce"] = text_cross_entropy(model, tokenizer, general_text(passages))
    out["seconds"] = time.perf_counter() - start
    return out


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def peak_memory_mb() -> float:
    """This process's peak as the trainer reads it (`train.loop.peak_memory_mb`): allocated CUDA memory where
    the cell used the GPU, else the resident set size."""
    used_cuda = torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0
    return train_peak_mb(torch.device("cuda" if used_cuda else "cpu"))


def hardware() -> dict:
    """The run manifest's hardware (`train.manifest.hardware`), plus the `cores` and `gpu` names records use."""
    info = manifest_hardware()
    return {**info, "cores": info["cpu_count"], "gpu": (info.get("gpus") or [None])[0]}
