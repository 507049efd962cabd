"""The task's own metric as an RL reward: each completion scored against the gold answer of its prompt.

`reward_from_references(PATH)` reads a JSONL file of {prompt, answer, choices?} rows (compare writes one per
training row, `data/rewards.jsonl`) and returns a `RewardFn` (train/rewards.py), registered there as the
reward kind `task` (`rloo.reward: task:PATH`), so `adaptlab train` reproduces a compare rloo cell. For a
classification task (rows with `choices`) the reward is the accuracy of the label the completion names,

    r(y | x) = 1[parse_choice(y, choices) = gold(x)]

(the last label named wins, as the `choice` answer extractor of eval/kinds.py reads it); without choices it
is SQuAD's normalised exact match of the completion's short answer with the gold answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from adaptlab.eval.kinds import parse_choice, short_answer
from adaptlab.eval.metrics import exact_match


def task_score(completion: str, answer: str, choices: list[str] | None) -> float:
    """1.0 when the completion gives the gold answer (the label it names, or its short answer), else 0.0."""
    if choices:
        return float(parse_choice(completion, choices) == answer)
    return exact_match(short_answer(completion), [answer])


def read_references(path: str | Path) -> dict[str, tuple[str, list[str] | None]]:
    """prompt -> (gold answer, choices) from a JSONL file; a bad row names the file and line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"reward task:{path}: no such references file")
    refs = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            refs[row["prompt"]] = (str(row["answer"]), row.get("choices"))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: a reference row needs 'prompt' and 'answer' ({e})") from None
    return refs


def reward_from_references(path: str) -> Callable[[list, list[str]], list[float]]:
    """The RewardFn that scores each completion with `task_score` against its prompt's references."""
    refs = read_references(path)

    def score(prompts: list, completions: list[str]) -> list[float]:
        out = []
        for prompt, completion in zip(prompts, completions, strict=True):
            if prompt not in refs:
                raise KeyError(f"reward task:{path}: no reference answer for the prompt {str(prompt)[:80]!r}")
            answer, choices = refs[prompt]
            out.append(task_score(completion, answer, choices))
        return out

    return score
