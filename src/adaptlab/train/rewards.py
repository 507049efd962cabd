"""Reward functions for RL and evaluation: `RewardFn(prompts, completions) -> scores`, one per completion.

A spec names where the scores come from, as `kind:value` with the kinds registered here, or bare:

    runs/reward/final          a trained reward model (`objective: reward`); kind `model`
    mypkg.scoring:brevity      a Python callable with the RewardFn signature; kind `callable`
    my_rewards.py:concise      the same, from a Python file (relative to the working directory)

Another kind (e.g. an LLM judge) is one `register_reward_kind(name, loader)` call, where `loader(value)`
returns a RewardFn.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from safetensors.torch import load_file

from adaptlab.registry import lookup

RewardFn = Callable[[list[str], list[str]], list[float]]
REWARD_KINDS: dict[str, Callable[[str], RewardFn]] = {}


def register_reward_kind(name: str, loader: Callable[[str], RewardFn]) -> None:
    REWARD_KINDS[name] = loader


def load_reward(spec: str) -> RewardFn:
    """The RewardFn a spec names (see the module docstring)."""
    if not spec:
        raise ValueError("no reward given: name a reward model directory, a 'module:function' callable, or "
                         f"'kind:value' with a kind from: {', '.join(sorted(REWARD_KINDS))}")
    kind, _, value = spec.partition(":")
    if kind in REWARD_KINDS and value:
        return REWARD_KINDS[kind](value)
    return lookup(REWARD_KINDS, "model" if Path(spec).is_dir() else "callable", "reward kind")(spec)


def callable_reward(spec: str) -> RewardFn:
    """`package.module:function` imported, or `path/to/file.py:function` loaded from that file; the function
    takes (prompts, completions) and returns floats."""
    module, _, name = spec.rpartition(":")
    if not module or not name:
        raise ValueError(f"reward {spec!r}: write a callable as 'package.module:function' or 'file.py:function'")
    fn = getattr(import_file(module) if module.endswith(".py") else importlib.import_module(module), name, None)
    if not callable(fn):
        raise TypeError(f"reward {spec!r}: {module} has no callable {name!r}")
    return fn


def import_file(path: str) -> ModuleType:
    """The Python file at `path` executed as a module (a reward shipped beside a recipe needs no package)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"reward file {path} not found (a relative path is read from the working directory)")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_reward(path: str, batch_size: int = 8, seq_len: int = 1024) -> RewardFn:
    """Score with a reward model trained by `objective: reward` (its final artifact directory)."""
    from adaptlab.methods.artifact import load_artifact
    from adaptlab.train.objectives.pairs import collate_pairs, render_responses, response_example
    from adaptlab.train.objectives.reward import HEAD_FILE, add_reward_head, sequence_rewards

    head_file = Path(path) / HEAD_FILE
    if not head_file.exists():
        raise ValueError(f"{path} is not a reward model (no {HEAD_FILE}); train one with objective: reward")
    artifact = load_artifact(path)
    model, tok = add_reward_head(artifact.model), artifact.tokenizer
    model.reward_head.weight.data.copy_(load_file(head_file)["weight"])
    device = next(model.parameters()).device

    @torch.no_grad()
    def score(prompts: list[str], completions: list[str]) -> list[float]:
        examples = []
        for prompt, completion in zip(prompts, completions, strict=True):
            ids, (answer,) = render_responses(prompt, [completion], tok)
            examples.append(response_example(ids[: seq_len - 1], answer, seq_len))
        out: list[float] = []
        for i in range(0, len(examples), batch_size):
            batch = collate_pairs(examples[i:i + batch_size], seq_len, tok.pad_token_id).to(device)
            out += sequence_rewards(model, batch).tolist()
        return out

    return score


def judge_reward(spec: str) -> RewardFn:
    """`judge:JUDGE,REFERENCES.jsonl[,CRITERIA]`: an AI judge (feedback/judge.py) that compares each completion
    with the reference answer to its prompt in both orders; win 1, tie 0.5, loss 0."""
    from adaptlab.feedback.judge import reward_from_spec

    return reward_from_spec(spec)


def task_reward(path: str) -> RewardFn:
    """`task:REFERENCES.jsonl`: the task's own metric of each completion against its prompt's gold answer
    (compare/reward.py; `adaptlab compare` writes the file for its rloo routes)."""
    from adaptlab.compare.reward import reward_from_references

    return reward_from_references(path)


register_reward_kind("model", model_reward)
register_reward_kind("callable", callable_reward)
register_reward_kind("judge", judge_reward)
register_reward_kind("task", task_reward)


BREVITY_WORDS = 16


def brevity(prompts: list, completions: list[str]) -> list[float]:
    """A builtin reward that a small model can learn in minutes, for trying RL: 1 for an empty answer, falling
    linearly to 0 at `BREVITY_WORDS` words or more. Spec: `adaptlab.train.rewards:brevity`."""
    return [1.0 - min(len(c.split()), BREVITY_WORDS) / BREVITY_WORDS for c in completions]
