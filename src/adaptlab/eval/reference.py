"""lm-evaluation-harness as the reference: our MMLU items written as local files and run through its HF
backend with the same prompt format (lm-eval's own `mmlu` template), so faithfulness is checked on the
same model, items and prompts. Used by the parity test and `benchmarks/eval_throughput.py`."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from adaptlab.eval.builtin_tasks import _as_list, _mmlu_rows, mmlu_header

MMLU_TEMPLATE = ("{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\n"
                 "D. {{choices[3]}}\nAnswer:")


def mmlu_slice(subjects: list[str] | None, per_subject: int) -> dict[str, list[dict]]:
    """The first `per_subject` test rows of each subject (all subjects when None), rows normalised."""
    test, _ = _mmlu_rows()
    out: dict[str, list[dict]] = {}
    for r in test:
        if (subjects is None or r["subject"] in subjects) and len(out.setdefault(r["subject"], [])) < per_subject:
            out[r["subject"]].append({"question": r["question"], "choices": _as_list(r["choices"]),
                                      "answer": int(r["answer"]), "subject": r["subject"]})
    return out


def lm_eval_mmlu(model, tokenizer, items: dict[str, list[dict]], shots: int = 5, batch_size: int = 16,
                 workdir: str | None = None) -> dict[str, list[tuple[int, str]]]:
    """(predicted choice index, the context lm-eval built) per item, by lm-eval's HFLM on its `mmlu`
    prompt, data from local JSONL."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    _, dev = _mmlu_rows()
    root = Path(workdir or tempfile.mkdtemp(prefix="adaptlab-lmeval-"))
    configs = []
    for subject, rows in items.items():
        test_file, dev_file = root / f"{subject}.test.jsonl", root / f"{subject}.dev.jsonl"
        test_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        dev_file.write_text("".join(json.dumps({"question": r["question"], "choices": _as_list(r["choices"]),
                                                "answer": int(r["answer"])}) + "\n" for r in dev[subject]))
        configs.append({
            "task": f"adaptlab_mmlu_{subject}", "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(test_file), "dev": str(dev_file)}},
            "test_split": "test", "fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"},
            "output_type": "multiple_choice", "doc_to_text": MMLU_TEMPLATE, "doc_to_choice": ["A", "B", "C", "D"],
            "doc_to_target": "answer", "description": mmlu_header(subject), "num_fewshot": shots,
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        })
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    # include_defaults=False: our configs only, without indexing lm-eval's thousands of builtin task files
    res = simple_evaluate(model=lm, tasks=configs, num_fewshot=shots, log_samples=True,
                          task_manager=TaskManager(include_defaults=False))
    out: dict[str, list[tuple[int, str]]] = {}
    for subject in items:
        samples = sorted(res["samples"][f"adaptlab_mmlu_{subject}"], key=lambda s: s["doc_id"])
        out[subject] = [(max(range(len(s["filtered_resps"])), key=lambda j: s["filtered_resps"][j][0]),
                         s["arguments"][0][0]) for s in samples]
    return out
