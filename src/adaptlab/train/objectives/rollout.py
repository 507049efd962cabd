"""Rollouts for online RL: prompts sampled k times by the current policy, scored by a reward function.

Prompts come from any record that has one: a prompts-only row (`{"prompt": ...}`, text or chat turns, in
JSONL/JSON/CSV/Parquet), a preference pair's prompt (e.g. builtin `hh-rlhf-harmless`), an instruction (with its
input; the output is ignored) or a chat's turns before its last assistant answer. Each is rendered through the
chat template (plain text when the tokenizer has none) exactly as the preference objectives render prompts. A
rollout packs the k samples of every prompt (adjacent) into a `PairBatch`, so their log-probs come from the same
fused code as DPO's (`target_logprobs`); the reference policy is the adapter switched off, or a frozen copy for
full fine-tuning, and its log-probs are kept per answer token (the KL estimators work per token).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from adaptlab.data.records import Chat, Instruction, Preference, Prompt, Record
from adaptlab.data.templates import to_messages
from adaptlab.models.generation import sample_ids
from adaptlab.train.losses import sequence_sums
from adaptlab.train.objectives.dpo import reference_context
from adaptlab.train.objectives.pairs import PairBatch, collate_pairs, render_responses, response_example, target_logprobs
from adaptlab.train.rewards import RewardFn


@dataclass
class PromptBatch:
    prompts: list                  # each prompt as the reward function sees it (text or chat turns)
    ids: list[list[int]]           # each prompt rendered to token ids, ending where the answer starts
    rollout_tokens: int = 0        # tokens of the last rollout (prompts + samples), for throughput

    def to(self, device: torch.device) -> PromptBatch:
        return self  # token lists; the rollout moves what it builds


@dataclass
class Rollout:
    batch: PairBatch               # prompt + sample sequences, the k samples of a prompt adjacent
    rewards: Tensor                # [P * k] reward-function scores
    ref_token_logps: Tensor        # [N] log pi_ref(y_t | x, y_<t) of every answer token (batch.targets)

    @property
    def ref_logps(self) -> Tensor:
        """[P * k] log pi_ref(y|x)."""
        return sequence_sums(self.ref_token_logps, self.batch.segment, len(self.batch.lengths))


def record_prompt(record: Record) -> str | list[dict[str, str]]:
    """The prompt a record asks."""
    if isinstance(record, (Prompt, Preference)):
        return record.prompt
    if isinstance(record, Instruction):
        return to_messages(record)[0]["content"]   # the user turn SFT renders (instruction + input)
    if isinstance(record, Chat):
        last = max((i for i, t in enumerate(record.messages) if t["role"] == "assistant"), default=len(record.messages))
        return record.messages[:last]
    raise TypeError(f"RL objectives need records with a prompt (prompt, preference, instruction or chat), "
                    f"got {type(record).__name__}")


def rl_batches(records: list[Record], tokenizer, cfg, objective: str) -> list[PromptBatch]:
    """Prompt micro-batches for the RL objective `objective`, whose settings are `cfg.<objective>` (a reward spec
    and `max_new_tokens`): a missing reward, or no room for a prompt in `seq_len`, is an error saying what to set."""
    section = getattr(cfg, objective)
    if not section.reward:
        raise ValueError(f"objective {objective} needs a reward: set {objective}.reward to a reward model directory, "
                         "a 'module:function' callable (e.g. adaptlab.train.rewards:brevity) or 'judge:...'")
    if cfg.seq_len <= section.max_new_tokens:
        raise ValueError(f"seq_len={cfg.seq_len} leaves no room for a prompt before {objective}.max_new_tokens="
                         f"{section.max_new_tokens}; raise seq_len")
    return prompt_batches(records, tokenizer, cfg.batch_size, cfg.seq_len - section.max_new_tokens)


def prompt_batches(records: list[Record], tokenizer, batch_size: int, max_prompt: int) -> list[PromptBatch]:
    """Micro-batches of `batch_size` prompts; prompts longer than `max_prompt` tokens keep their end."""
    prompts = [record_prompt(r) for r in records]
    ids = [render_responses(p, [""], tokenizer)[0][-max_prompt:] for p in prompts]
    return [PromptBatch(prompts[i:i + batch_size], ids[i:i + batch_size]) for i in range(0, len(prompts), batch_size)]


def frozen_reference(model: nn.Module) -> nn.Module | None:
    """None when the model is a peft model (the reference is its adapter switched off), else a frozen copy."""
    if callable(getattr(model, "disable_adapter", None)):
        return None
    return copy.deepcopy(model).eval().requires_grad_(False)


@torch.no_grad()
def rollout(model: nn.Module, reference: nn.Module | None, tokenizer, batch: PromptBatch, reward: RewardFn, k: int,
            max_new_tokens: int, temperature: float, seq_len: int) -> Rollout:
    """Sample k answers per prompt, score them, and take their reference log-probs (eval mode, no dropout)."""
    was_training = model.training
    model.eval()
    try:
        prompt_ids = [p for p in batch.ids for _ in range(k)]
        samples = sample_ids(model, prompt_ids, max_new_tokens, temperature, tokenizer.eos_token_id,
                             tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(samples, skip_special_tokens=True)
        scores = reward([p for p in batch.prompts for _ in range(k)], texts)
        examples = [response_example(p, s, seq_len) for p, s in zip(prompt_ids, samples)]
        packed = collate_pairs(examples, seq_len, tokenizer.pad_token_id).to(next(model.parameters()).device)
        if reference is not None:
            ref = target_logprobs(reference, packed)
        else:
            with reference_context(model):
                ref = target_logprobs(model, packed)
    finally:
        model.train(was_training)
    batch.rollout_tokens = packed.rows.n_real_tokens
    return Rollout(packed, torch.tensor(scores, dtype=torch.float32, device=ref.device), ref.float())


CURVES = ("reward", "kl", "length", "entropy")
CURVES_FILE = "rl_curves.png"


class Curves:
    """An RL run's per-step training means, kept as they come and drawn to `rl_curves.png` only when asked (the
    loop's `draw` hook: main process, at evaluations, saves and the end), not at every step."""

    def __init__(self, out: Path | None = None, keys: tuple[str, ...] = CURVES):
        self.path = Path(out) / CURVES_FILE if out is not None else None
        self.keys, self.history = keys, []

    def keep(self, stats: dict[str, float]) -> dict[str, float]:
        """Remember a training step's stats (evaluation rows carry no `reward` key) and hand them back."""
        if "reward" in stats:
            self.history.append(stats)
        return stats

    def draw(self) -> None:
        if self.history and self.path is not None:
            plot_curves(self.history, self.path, self.keys)


def plot_curves(history: list[dict[str, float]], path: Path, keys: tuple[str, ...] = CURVES) -> None:
    """One panel per logged RL quantity in `keys` against the step, written atomically to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3))
    steps = range(1, len(history) + 1)
    for ax, key in zip(axes, keys):
        ax.plot(steps, [h.get(key, float("nan")) for h in history], marker=".")
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)
