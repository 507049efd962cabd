"""Named suites: tasks at their standard shots, with the published scores to print beside ours.

table1: the classic comparison (LLaMA 2 70B from Touvron et al. 2023, tables 3, 22-23 and 26; GPT-3.5 and
GPT-4 from OpenAI 2023, the GPT-4 technical report). Scores in percent."""

from __future__ import annotations

from dataclasses import dataclass

from adaptlab.registry import lookup


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[str, ...]
    published: dict[str, dict[str, float]]   # reference model -> task -> score
    description: str = ""


SUITES: dict[str, Suite] = {s.name: s for s in [
    Suite("table1", ("mmlu", "triviaqa", "nq_open", "gsm8k", "humaneval", "bbh"), {
        "LLaMA 2 70B": {"mmlu": 68.9, "triviaqa": 85.0, "nq_open": 33.0, "gsm8k": 56.8, "humaneval": 29.9, "bbh": 51.2},
        "GPT-3.5": {"mmlu": 70.0, "gsm8k": 57.1, "humaneval": 48.1},
        "GPT-4": {"mmlu": 86.4, "gsm8k": 92.0, "humaneval": 67.0},
    }, "MMLU 5-shot, TriviaQA 1-shot, NQ 1-shot, GSM8K 8-shot CoT, HumanEval 0-shot pass@1, BBH 3-shot CoT"),
]}


def get_suite(name: str) -> Suite:
    """A named suite; an unknown name lists the valid ones."""
    return lookup(SUITES, name, "suite")
