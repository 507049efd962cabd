"""RLHF vs RLAIF vs DPO from one recipe (feedback/recipe.py), as in the RLAIF paper's Figure 3 (Lee et al. 2023,
"RLAIF: Scaling Reinforcement Learning from Human Feedback with AI Feedback", arXiv:2309.00267).

The preference pairs stand in for human votes and are split (seeded, disjoint) into train pairs, held-out
judge pairs, calibration pairs and evaluation prompts. Each stage is one `train.train` run in its own folder
under `output_dir`; a stage whose `final/` artifact exists is skipped, one cut short resumes from its last
checkpoint, so a rerun only does what is missing. A folder trained from another split or with other stage
settings is refused rather than silently reused:

    sft            LoRA (or the recipe's method) on the train pairs' chosen answers; merged into sft-merged/
    reward-rlhf    reward model on the train pairs (the human votes); its accuracy on the calibration pairs is
                   reported (likewise reward-rlaif's: how well the AI labels teach the human preference)
    rlhf           RLOO from the SFT policy against reward-rlhf
    dpo            DPO from the SFT policy on the same pairs
    ai-labels      the same pairs relabelled by the AI judge (both orders, recipe's order rule; ties dropped)
    reward-rlaif   reward model on the AI labels;  rlaif: RLOO from SFT against it (or DPO on the AI labels)
    reward-heldout reward model on the held-out judge pairs: the held-out judge (feedback/policy_eval.py)

Then every policy answers the evaluation prompts and feedback/policy_eval.py scores them; results.json and
report.md carry each phase's wall and CPU seconds (a stage skipped on a rerun counts ~0).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adaptlab.config import ConfigError, TrainConfig, explain
from adaptlab.feedback.backends import make_backend
from adaptlab.feedback.judge import Item, criteria_text, judge_pairs, report, transcript
from adaptlab.feedback.recipe import ComparisonConfig
from adaptlab.feedback.store import write_jsonl

log = logging.getLogger(__name__)
Event = Callable[[str], None]
POLICIES = ("sft", "rlhf", "dpo", "rlaif")


def pair_chars(r) -> int:
    """A pair's size as every phase reads it: the prompt's transcript and the longer answer, in characters."""
    return len(transcript(r.prompt)) + max(len(r.chosen), len(r.rejected))


def split_pairs(cfg: ComparisonConfig) -> dict[str, list]:
    """Disjoint slices of the recipe's pairs after a seeded shuffle: train, judge, calibration, eval (pairs
    longer than split.max_chars left out first)."""
    from adaptlab.data import load_records
    from adaptlab.data.records import Preference

    s = cfg.split
    records = [r for r in load_records(cfg.pairs) if isinstance(r, Preference)
               and (s.max_chars is None or pair_chars(r) <= s.max_chars)]
    sizes = {"train": s.train_pairs, "judge": s.judge_pairs, "calibration": s.calibration_pairs, "eval": s.eval_prompts}
    if sum(sizes.values()) > len(records):
        within = "" if s.max_chars is None else f" of at most {s.max_chars} characters (split.max_chars)"
        raise ValueError(f"split asks for {sum(sizes.values())} pairs but {cfg.pairs} holds {len(records)} "
                         f"preference pairs{within}; lower split.*")
    random.Random(cfg.seed).shuffle(records)
    out, start = {}, 0
    for name, n in sizes.items():
        out[name], start = records[start: start + n], start + n
    return out


@contextmanager
def timed(seconds: dict[str, dict[str, float]], name: str) -> Iterator[None]:
    """Adds the block's wall and CPU seconds (all threads of this process) to seconds[name]: the per-phase split
    in results.json and report.md. On a shared machine the CPU seconds are the steadier figure."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        spent = seconds.setdefault(name, {"wall": 0.0, "cpu": 0.0})
        spent["wall"] += time.perf_counter() - wall
        spent["cpu"] += time.process_time() - cpu


def pair_row(r) -> dict:
    return {"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected}


def chat_turns(prompt) -> list[dict[str, str]]:
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def write_data(cfg: ComparisonConfig, out: Path) -> dict[str, Path]:
    """The split as JSONL files the objectives read (data/); written once, so a rerun trains on the same."""
    data = out / "data"
    files = {name: data / f"{name}.jsonl" for name in ("human", "sft", "judge", "calibration", "eval")}
    spec = {"pairs": cfg.pairs, "seed": cfg.seed, "split": cfg.split.model_dump()}
    if (data / "split.json").exists():
        if json.loads((data / "split.json").read_text()) != spec:
            raise ValueError(f"{out} holds a comparison made from another split ({(data / 'split.json').read_text()}); "
                             "choose another output_dir or delete that one")
        if all(f.exists() for f in files.values()):
            return files
    split = split_pairs(cfg)
    write_jsonl([pair_row(r) for r in split["train"]], files["human"])
    write_jsonl([{"messages": [*chat_turns(r.prompt), {"role": "assistant", "content": r.chosen}]}
                 for r in split["train"]], files["sft"])
    for name in ("judge", "calibration", "eval"):
        write_jsonl([pair_row(r) for r in split[name]], files[name])
    (data / "split.json").write_text(json.dumps(spec))
    return files


def stage_config(cfg: ComparisonConfig, name: str, section: dict[str, Any], out: Path, **keys: Any) -> TrainConfig:
    """`train` + the stage's section + what the pipeline sets (model, objective, data, output_dir)."""
    from adaptlab.compare.runner import deep_merge

    tree = deep_merge(deep_merge(cfg.train, section), {"output_dir": str(out / name), **keys})
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(explain(e, TrainConfig, f"(stage {name}: keys from `train` and its section)")) from None


def data_keys(train: Path, eval_file: Path | None = None) -> dict:
    return {"data": {"train": str(train), "eval": str(eval_file) if eval_file else None, "eval_fraction": 0.0}}


def run_stage(tc: TrainConfig, event: Event) -> Path:
    """Train one stage unless its artifact exists; a run cut short resumes from its last checkpoint."""
    from adaptlab.train import train

    out = Path(tc.output_dir)
    final = out / "final"
    if final.is_dir():
        before = json.loads((out / "manifest.json").read_text()).get("config", {})
        now = json.loads(json.dumps(tc.model_dump(), default=str))
        changed = sorted(k for k in now if before.get(k) != now[k])
        if changed:
            raise ValueError(f"stage {out.name} in {out.parent} was trained with other settings ({', '.join(changed)}); "
                             "choose another output_dir or delete that one")
        event(f"{out.name}: done before, skipped")
        return final
    resume = (out / "checkpoints").is_dir()
    event(f"{out.name}: {tc.objective} for {tc.max_steps} steps" + (" (resuming)" if resume else ""))
    train(tc, resume=resume, overwrite=not resume)
    return final


def merge_once(artifact: Path, out: Path, event: Event) -> Path:
    """The SFT adapter folded into a plain transformers folder, the model every later policy starts from."""
    from adaptlab.methods.fidelity import merge_artifact

    if (out / "config.json").exists():
        return out
    event(f"{out.name}: merging {artifact}")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merge_artifact(artifact, tmp, save_dtype="fp32")
    os.replace(tmp, out)
    return out


def ai_labels(cfg: ComparisonConfig, human: Path, out: Path, event: Event) -> tuple[Path, dict]:
    """The train pairs relabelled by the AI judge: decided pairs as preference rows, and the judge report."""
    target = out / "data" / "ai.jsonl"
    rows = [json.loads(line) for line in human.read_text(encoding="utf-8").splitlines()]
    items = [Item(transcript(r["prompt"]), r["chosen"], r["rejected"], "x") for r in rows]
    j = cfg.ai_judge
    event(f"ai-labels: {j.model} ({j.scoring}, {j.order_rule} rule) judges {len(items)} pairs in both orders")
    backend = make_backend(j.model, j.endpoint_model, scoring=j.scoring, criteria=cfg.criteria)
    records = judge_pairs(items, backend, criteria_text(cfg.criteria), out / "ai-labels.verdicts",
                          order_rule=j.order_rule)
    labelled = [{"prompt": row["prompt"], "chosen": rec[rec["verdict"]], "rejected": rec["y" if rec["verdict"] == "x" else "x"]}
                for row, rec in zip(rows, records) if rec["verdict"] != "tie"]
    if len(labelled) < 2:
        raise ValueError(f"the AI judge decided {len(labelled)} of {len(items)} pairs; too few to train on "
                         "(try ai_judge.order_rule: average)")
    write_jsonl(labelled, target)
    return target, report(records).__dict__


def run_arms(cfg: ComparisonConfig, event: Event = log.info) -> dict[str, Any]:
    """Train (or reuse) every stage; returns the policies (name -> (model, adapter or None)), the held-out
    reward model, the data files, the steps and seconds of each stage and the AI judge's report."""
    out = Path(cfg.output_dir).resolve()
    files = write_data(cfg, out)
    steps: dict[str, int] = {}
    seconds: dict[str, dict[str, float]] = {}

    def stage(name: str, section: dict[str, Any], model: str, objective: str, pairs: Path, eval_file: Path | None = None) -> Path:
        tc = stage_config(cfg, name, section, out, model=model, objective=objective, **data_keys(pairs, eval_file))
        steps[name] = tc.max_steps
        with timed(seconds, name):
            return run_stage(tc, event)

    sft = stage("sft", cfg.sft, cfg.model, "sft", files["sft"])
    with timed(seconds, "sft-merged"):
        base = str(merge_once(sft, out / "sft-merged", event))

    def rl(name: str, pairs: Path) -> Path:
        reward = stage(f"reward-{name}", cfg.reward, cfg.model, "reward", pairs, files["calibration"])
        section = {**cfg.rloo, "rloo": {**cfg.rloo.get("rloo", {}), "reward": str(reward)}}
        return stage(name, section, base, "rloo", pairs)

    policies = {"sft": (base, None), "rlhf": (base, rl("rlhf", files["human"])),
                "dpo": (base, stage("dpo", cfg.dpo, base, "dpo", files["human"]))}
    with timed(seconds, "ai-labels"):
        ai, judge_report = ai_labels(cfg, files["human"], out, event)
    policies["rlaif"] = (base, rl("rlaif", ai) if cfg.rlaif_objective == "rloo" else stage("rlaif", cfg.dpo, base, "dpo", ai))
    # no eval file: its accuracy on the calibration pairs is scored once, with the policies (policy_eval.py)
    heldout = stage("reward-heldout", cfg.reward, cfg.model, "reward", files["judge"])
    return {"out": out, "files": files, "policies": policies, "heldout_reward": heldout, "ai_judge": judge_report,
            "steps": steps, "seconds": seconds}


def eval_accuracy(stage_dir: Path) -> float | None:
    """A reward stage's last pair accuracy on its eval file (the calibration pairs), percent."""
    rows = [r for r in read_rows(stage_dir / "metrics.jsonl") if "eval_accuracy" in r]
    return 100 * rows[-1]["eval_accuracy"] if rows else None


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_comparison(cfg: ComparisonConfig, event: Event = log.info) -> dict[str, Any]:
    """Every stage, every policy's answers to the held-out prompts, their win and harmless rates; writes
    results.json, report.md and rlhf_vs_rlaif.png to `output_dir` and returns the results."""
    from adaptlab.feedback.comparison_report import chart, markdown
    from adaptlab.feedback.policy_eval import answers, endpoint_wins, evaluate_policies
    from adaptlab.train.rewards import model_reward

    arms = run_arms(cfg, event)
    out, files, seconds = arms["out"], arms["files"], arms["seconds"]
    prompts = [r["prompt"] for r in read_rows(files["eval"])]
    said = {}
    for name, (model, adapter) in arms["policies"].items():
        event(f"answers: {name} answers {len(prompts)} held-out prompts")
        with timed(seconds, "answers"):
            said[name] = answers(model, str(adapter) if adapter else None, prompts, cfg.generation,
                                 out / "answers" / f"{name}.jsonl")
    judge = None
    if cfg.heldout_judge != "reward-model":
        def judge(name: str, policy: list[str]) -> list[float]:
            return endpoint_wins(cfg.heldout_judge, cfg.heldout_judge_model, cfg.criteria, prompts, policy,
                                 said["sft"], out / "heldout-judge" / f"{name}.verdicts")
    event("scoring: the held-out judge compares every policy with SFT")
    with timed(seconds, "heldout-judging"):
        evaluation = evaluate_policies(said, prompts, model_reward(str(arms["heldout_reward"])),
                                       read_rows(files["calibration"]), judge)
    j = cfg.ai_judge
    results = {"model": cfg.model, "pairs": cfg.pairs, "criteria": cfg.criteria, "eval_prompts": len(prompts),
               "heldout_judge": ("a reward model trained on held-out human pairs (reward-heldout)"
                                 if judge is None else f"{cfg.heldout_judge}, both orders, FastChat rule"),
               "ai_judge_spec": f"{j.model} ({j.scoring} scoring, {j.order_rule} order rule)",
               "rlaif_objective": cfg.rlaif_objective, "steps": arms["steps"], "ai_judge": arms["ai_judge"],
               "reward_accuracy": {name: eval_accuracy(out / f"reward-{name}") for name in ("rlhf", "rlaif")
                                   if (out / f"reward-{name}").is_dir()},
               "eval": evaluation, "seconds": {k: {t: round(s, 1) for t, s in v.items()} for k, v in seconds.items()}}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(markdown(results), encoding="utf-8")
    (out / "rlhf_vs_rlaif.png").write_bytes(chart(results))
    return results
