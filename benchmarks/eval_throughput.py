"""MMLU 5-shot items/s on SmolLM2-135M: adaptlab's evaluator vs lm-evaluation-harness (HF backend), same run.

Both see the same model object (same dtype, `auto`: bf16 where the CPU/GPU computes it), the same items
(the first N test items of the first S subjects) and the same prompts (lm-eval's mmlu template; the data are
given to lm-eval as local JSONL files). Prints one JSON line last:
{"ours_items_s", "baseline_items_s", "ratio", "ours_acc", "baseline_acc", "agreement", "n", ...}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time

import torch

from adaptlab.eval.catalog import get_task
from adaptlab.eval.kinds import run_choices
from adaptlab.eval.reference import lm_eval_mmlu, mmlu_slice
from adaptlab.models import load_model

SUBJECTS = ["high_school_geography", "marketing", "nutrition", "astronomy", "sociology", "virology",
            "world_religions", "prehistory"]


def _top2_margin(lls: list[float]) -> float:
    top = sorted(lls, reverse=True)
    return top[0] - top[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--subjects", type=int, default=6)
    ap.add_argument("--per-subject", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--quick", action="store_true", help="2 subjects x 16 items (< 50 s)")
    args = ap.parse_args()
    if args.quick:
        args.subjects, args.per_subject = 2, 16
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    loaded = load_model(args.model, dtype=args.dtype)
    model, tok = loaded.model, loaded.tokenizer
    subjects = SUBJECTS[: args.subjects]
    task = get_task("mmlu")
    proto = task.protocol()
    built = task.build(proto)
    samples = [s for subject in subjects for s in [x for x in built if x.group == subject][: args.per_subject]]
    with torch.inference_mode():   # warm-up: first-call kernel selection should not count for either side
        model(torch.tensor([tok.encode(samples[0].context)[:64]], device=next(model.parameters()).device))

    # the machine may be shared: alternate the two evaluators subject by subject so both see the same load,
    # and record CPU time beside wall time
    ours_s = base_s = ours_cpu = base_cpu = 0.0
    ours_pred, base_pred, margins, same_prompts = [], [], [], True
    items = mmlu_slice(subjects, args.per_subject)
    with tempfile.TemporaryDirectory() as workdir:
        for subject in subjects:
            mine = [s for s in samples if s.group == subject]
            w, c = time.perf_counter(), time.process_time()
            scored = run_choices(model, tok, task, mine, proto, batch_size=args.batch_size)
            ours_s, ours_cpu = ours_s + time.perf_counter() - w, ours_cpu + time.process_time() - c
            ours_pred += [["A", "B", "C", "D"].index(x.answer) for x in scored]
            margins += [_top2_margin(x.extra["loglikelihoods"]) for x in scored]

            w, c = time.perf_counter(), time.process_time()
            theirs = lm_eval_mmlu(model, tok, {subject: items[subject]}, batch_size=args.batch_size, workdir=workdir)
            base_s, base_cpu = base_s + time.perf_counter() - w, base_cpu + time.process_time() - c
            base_pred += [p for p, _ in theirs[subject]]
            same_prompts &= [s.context for s in mine] == [ctx for _, ctx in theirs[subject]]

    gold = [s.target for s in samples]
    # where the two evaluators disagree, how close our top two choices were (nats): bf16 rounding flips near-ties
    split = [m for m, a, b in zip(margins, ours_pred, base_pred) if a != b]
    n = len(gold)
    ours_acc = 100 * sum(p == g for p, g in zip(ours_pred, gold)) / n
    base_acc = 100 * sum(p == g for p, g in zip(base_pred, gold)) / n
    result = {
        "ours_items_s": round(n / ours_s, 3), "baseline_items_s": round(n / base_s, 3),
        "ratio": round(base_s / ours_s, 3), "cpu_ratio": round(base_cpu / ours_cpu, 3), "ours_acc": round(ours_acc, 2), "baseline_acc": round(base_acc, 2),
        "agreement": round(sum(a == b for a, b in zip(ours_pred, base_pred)) / n, 4), "n": n,
        "disagreements": len(split), "disagreement_max_margin_nats": round(max(split), 4) if split else None,
        "same_prompts": same_prompts, "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "device": str(next(model.parameters()).device), "model": args.model, "subjects": len(subjects),
        "batch_size": args.batch_size, "threads": torch.get_num_threads(), "quick": args.quick,
    }
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
