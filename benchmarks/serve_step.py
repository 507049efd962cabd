"""CPU cost of one serving decode step at batch 16: bare base vs mixed adapters (batched `RowAdapters` and
peft's `adapter_names=` path), against transformers `generate` one request at a time, same run.

Wall-clock load tests (`benchmarks/serve.py`) swing by several times on a shared, loaded machine. This
measures CPU time of the decoding thread (`time.thread_time`) with one intra-op thread, which the load
does not inflate much, so the ratios hold on a busy machine: decode tokens per CPU-second of each lane,
the mixed lanes' cost relative to the base, and the ratio to the sequential baseline (decode only: prefill,
HTTP and threading are what `serve.py` adds). Each lane holds 16 rows of the builtin model (two LoRA r=8
adapters on every linear layer, rows cycling base / a / b in the mixed lanes); the lanes' steps interleave.
Prints one JSON line last: {"batch", "base_step_ms", "mixed_step_ms", "peft_mixed_step_ms",
"baseline_token_ms", "base_x_baseline", "mixed_x_baseline", "mixed_vs_base", "peft_mixed_vs_base", ...}.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time

import torch
from serve import _adapters, _prompt

from adaptlab.data.templates import chat_prompt_ids
from adaptlab.methods.multi import BASE
from adaptlab.models.decode import Lane, Row, SamplingParams
from adaptlab.models.generation import eos_token_ids
from adaptlab.serve.backend import MIXED, load_backend


def _lane(backend, forward, adapters: list[str], batch: int) -> Lane:
    tok = backend.tokenizer
    rows = [Row(chat_prompt_ids(_prompt(i), tok), SamplingParams(max_tokens=10_000), adapters[i % len(adapters)], tok,
                eos_token_ids(tok, backend.model), 2048) for i in range(batch)]
    lane = Lane(forward, tok.eos_token_id)
    lane.join(rows)
    lane.step()   # warm-up: the step shapes' kernels are set up once
    return lane


def baseline_token_s(model, tok, tokens: int) -> float:
    """CPU seconds per generated token of `generate` on one request (greedy, no early stop)."""
    ids = tok.apply_chat_template(_prompt(0), add_generation_prompt=True, return_tensors="pt", return_dict=True)
    kw = {"do_sample": False, "pad_token_id": tok.eos_token_id}
    with torch.inference_mode():
        model.generate(**ids, max_new_tokens=2, **kw)
        start = time.thread_time()
        model.generate(**ids, max_new_tokens=tokens, min_new_tokens=tokens, **kw)
    return (time.thread_time() - start) / tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16, help="timed steps per lane")
    ap.add_argument("--quick", action="store_true", help="6 timed steps per lane, 12 baseline tokens")
    args = ap.parse_args()
    steps, tokens = (6, 12) if args.quick else (args.steps, 32)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        backend = load_backend(args.model, _adapters(args.model, root), name="m")
    lanes = {"base": _lane(backend, backend.forward_for(MIXED), [BASE], args.batch),
             "mixed": _lane(backend, backend.forward_for(MIXED), [BASE, "a", "b"], args.batch),
             "peft_mixed": _lane(backend, backend.adapters.forward_mixed, [BASE, "a", "b"], args.batch)}
    times: dict[str, list[float]] = {k: [] for k in lanes}
    for _ in range(steps):
        for name, lane in lanes.items():
            start = time.thread_time()
            lane.step()
            times[name].append(time.thread_time() - start)
    step = {k: statistics.median(v) for k, v in times.items()}
    with backend.adapters.active(BASE) as model:
        token = baseline_token_s(model, backend.tokenizer, tokens)
    # decode tokens per CPU-second of a lane over the baseline's
    x_baseline = lambda s: round(args.batch * token / s, 2)
    result = {"batch": args.batch, "steps": steps, "base_step_ms": round(1000 * step["base"], 1),
              "mixed_step_ms": round(1000 * step["mixed"], 1), "peft_mixed_step_ms": round(1000 * step["peft_mixed"], 1),
              "baseline_token_ms": round(1000 * token, 1), "base_x_baseline": x_baseline(step["base"]),
              "mixed_x_baseline": x_baseline(step["mixed"]), "mixed_vs_base": round(step["base"] / step["mixed"], 2),
              "peft_mixed_vs_base": round(step["base"] / step["peft_mixed"], 2),
              "dtype": str(backend.model.dtype).removeprefix("torch."), "torch_threads": torch.get_num_threads()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
