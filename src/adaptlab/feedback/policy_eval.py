"""Win rate over the SFT policy and harmless rate, judged by a held-out judge (feedback/comparison.py).

Win rate of policy P over SFT on n held-out prompts (Lee et al. 2023 sec. 4.1): each prompt's two answers
are compared by the held-out judge and scored w_i = 1 (P's answer wins), 1/2 (tie) or 0; the win rate is
mean(w_i), with a 95% interval from compare/stats.py (Wilson when no tie, else percentile bootstrap).

- held-out judge `reward-model` (default): a reward model trained on held-out pairs disjoint from every
  policy's training data; P wins when r(x, y_P) > r(x, y_SFT), equal rewards tie. A reward model scores each
  answer alone, so the order the two are shown in cannot matter.
- an OpenAI-compatible URL: the pair is judged in both orders with the FastChat rule (feedback/judge.py).

Harmless rate of P: the share of P's answers the held-out reward model scores above a threshold t,

    harmless(P) = (1/n) sum_i [r(x_i, y_P,i) > t],

where t is calibrated on held-out calibration pairs (in no training set) as the threshold that best separates
their chosen from their rejected answers: t maximises (#{chosen c: r(c) > t} + #{rejected j: r(j) <= t}) / 2m
over the midpoints between sorted scores. The interval is Wilson's. (The paper's harmless rate is the share
of answers human raters call harmless; here the human-trained held-out reward model stands in for them.)
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from adaptlab.compare.stats import interval, wilson
from adaptlab.feedback.backends import make_backend
from adaptlab.feedback.judge import Item, criteria_text, judge_pairs, transcript
from adaptlab.feedback.recipe import GenerationSpec
from adaptlab.feedback.store import write_jsonl

RewardFn = Callable[[list, list[str]], list[float]]


def win_scores(policy: Sequence[float], sft: Sequence[float]) -> list[float]:
    """w_i = 1 / 0.5 / 0 when the policy's answer scores above / equal to / below the SFT answer's."""
    return [1.0 if p > s else 0.5 if p == s else 0.0 for p, s in zip(policy, sft, strict=True)]


def calibrate_threshold(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """The t that best separates chosen (above t) from rejected (at or below t) scores; see the module docstring."""
    if not chosen or not rejected:
        raise ValueError("calibrating the harmless threshold needs chosen and rejected scores")
    values = sorted({*chosen, *rejected})
    candidates = [values[0] - 1.0] + [(a + b) / 2 for a, b in itertools.pairwise(values)]

    def accuracy(t: float) -> int:
        return sum(c > t for c in chosen) + sum(r <= t for r in rejected)

    return max(candidates, key=accuracy)


def rate(scores: Sequence[float]) -> dict[str, float]:
    """Mean and 95% interval of per-item scores, in percent."""
    lo, hi = interval(list(scores))
    return {"value": 100 * sum(scores) / len(scores), "low": 100 * lo, "high": 100 * hi, "n": len(scores)}


def answers(model_ref: str, adapter: str | None, prompts: list, spec: GenerationSpec, path: Path) -> list[str]:
    """The policy's answers to `prompts` (chat template, the adapter merged in), cached in `path` so a rerun does
    not regenerate."""
    if path.exists():
        cached = [json.loads(line)["answer"] for line in path.read_text(encoding="utf-8").splitlines()]
        if len(cached) == len(prompts):
            return cached
    from adaptlab.methods.artifact import load_adapted
    from adaptlab.models.generation import generate

    model, tok = load_adapted(model_ref, adapter)
    # answering only needs the adapted weights: folded in, each layer is one matmul instead of the base's plus the
    # adapter's (fp32) ones, ~3x less CPU per decoded token on the builtin model, equal up to bf16 rounding
    merge = getattr(model, "merge_and_unload", None)
    if merge is not None:
        model = merge()
    texts = [tok.apply_chat_template(p if isinstance(p, list) else [{"role": "user", "content": p}], tokenize=False,
                                     add_generation_prompt=True) if tok.chat_template else transcript(p) for p in prompts]
    out = [a.strip() for a in generate(model, tok, texts, max_new_tokens=spec.max_new_tokens,
                                       temperature=spec.temperature, batch_size=spec.batch_size)]
    write_jsonl([{"prompt": p, "answer": a} for p, a in zip(prompts, out)], path)
    return out


def endpoint_wins(url: str, model: str | None, criteria: str, prompts: list, policy: list[str], sft: list[str],
                  state: Path) -> list[float]:
    """w_i from an OpenAI-compatible judge, both orders, FastChat rule (x = the policy's answer)."""
    items = [Item(transcript(p), a, b) for p, a, b in zip(prompts, policy, sft)]
    records = judge_pairs(items, make_backend(url, model), criteria_text(criteria), state)
    return [{"x": 1.0, "tie": 0.5, "y": 0.0}[r["verdict"]] for r in records]


def evaluate_policies(answers_by_policy: dict[str, list[str]], prompts: list, reward: RewardFn,
                      calibration: list[dict], judge: Callable[[str, list[str]], list[float]] | None = None) -> dict:
    """Win rate over 'sft' and harmless rate of every policy (module docstring); `judge(name, answers)` gives
    the w_i when the held-out judge is an endpoint, else the reward model's scores decide."""
    cal_prompts = [r["prompt"] for r in calibration]
    chosen = reward(cal_prompts, [r["chosen"] for r in calibration])
    rejected = reward(cal_prompts, [r["rejected"] for r in calibration])
    t = calibrate_threshold(chosen, rejected)
    rewards = {name: reward(prompts, a) for name, a in answers_by_policy.items()}
    rows = {}
    for name, r in rewards.items():
        wins = (judge(name, answers_by_policy[name]) if judge else win_scores(r, rewards["sft"])) if name != "sft" else None
        rows[name] = {"win_rate": rate(wins) if wins else None,
                      "harmless_rate": rate([float(x > t) for x in r]),
                      "mean_reward": sum(r) / len(r)}
    separated = sum(c > t for c in chosen) + sum(x <= t for x in rejected)
    return {"policies": rows, "threshold": t, "calibration_pairs": len(calibration),
            "calibration_accuracy": 100 * separated / (2 * len(calibration)),
            "heldout_pair_accuracy": 100 * sum(c > x for c, x in zip(chosen, rejected)) / len(calibration),
            "heldout_pair_interval": [100 * v for v in wilson(sum(c > x for c, x in zip(chosen, rejected)), len(calibration))]}
