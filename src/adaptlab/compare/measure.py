"""What a cell measures, each a plain function: task score with its interval, forgetting, sizes, memory.

Forgetting (Biderman et al. 2024, "LoRA Learns Less and Forgets Less"; peft's method comparison) is
the change from the base model to the adapted one of (a) accuracy on a fixed MMLU slice and (b) the
mean token cross-entropy on a fixed general-text sample:  CE = - sum_t log p(x_t | x_<t) / #tokens.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from adaptlab.compare.stats import interval
from adaptlab.eval.catalog import get_task
from adaptlab.eval.runner import ContextBuilder, ProgressFactory, evaluate_task
from adaptlab.eval.tasks import Task


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
    """This process's peak: resident set size on CPU (ru_maxrss), allocated memory on CUDA."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hardware() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "platform": platform.platform()}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("adaptlab", "torch", "transformers", "peft", "bitsandbytes"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
