"""PPO: proximal policy optimization from a reward function (Schulman et al. 2017, arXiv:1707.06347), in the
RLHF form of Ziegler et al. 2019 (arXiv:1909.08593) and trl's last PPOTrainer, with a value head on the policy.

Every micro-batch of prompts is rolled out first (train/objectives/rollout.py): `ppo.k` answers per prompt from
the current policy, scored by `ppo.reward`, with their per-token log-probs under the frozen reference (the adapter
switched off, or a frozen copy for full fine-tuning). A scalar value head V (hidden -> 1) on the policy's last
hidden states trains with the method's parameters (it is a trainable parameter of the model, so checkpoints hold
it and `--resume` restores it; the artifact gets `value_head.safetensors`). Per answer token t:

    kl_t = kl_estimate(log pi_old(y_t), log pi_ref(y_t))             (k1 or k3, `ppo.kl_estimator`)
    r_t  = -beta kl_t  (+ the reward-function score at the last token)
    A_t, R_t = GAE(r, V_old; gamma, lambda),   A whitened over the micro-batch's answer tokens
    L_t  = max(-A_t rho_t, -A_t clip(rho_t, 1 -+ eps)) + c_v 1/2 max((V - R)^2, (V_clip - R)^2)

(maths in train/losses.py), averaged over each answer's tokens; the loop averages over answers. One rollout serves
`ppo.ppo_epochs` optimizer steps (the loop's `steps_per_batch` hook repeats the step's micro-batches): pi_old and
V_old are the policy's log-probs and values in the first of them (the ratio rho is 1 there), so clipping acts from
the second on. Each of those steps is one full batch (trl's num_mini_batches = 1). Logged per step (and `eval_*`
on held-out prompts): reward, kl (nats per answer), length, entropy, value_loss and clipfrac (share of tokens whose
clipped policy term binds), plotted in `rl_curves.png`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from adaptlab.train.losses import gae_advantages, kl_estimate, masked_whiten, ppo_policy_loss, ppo_value_loss
from adaptlab.train.objectives.base import register
from adaptlab.train.objectives.pairs import PairStats, hidden_states, target_logprobs
from adaptlab.train.objectives.rollout import CURVES, Curves, PromptBatch, Rollout, frozen_reference, rl_batches, rollout
from adaptlab.train.rewards import load_reward

HEAD_FILE = "value_head.safetensors"


def add_value_head(model: nn.Module) -> nn.Module:
    """Attach a trainable fp32 `value_head` (hidden -> 1, zero start: V = 0 before training) to `model`."""
    hidden = model.get_input_embeddings().weight.shape[1]
    model.value_head = nn.Linear(hidden, 1, device=next(model.parameters()).device, dtype=torch.float32)
    nn.init.zeros_(model.value_head.weight)
    nn.init.zeros_(model.value_head.bias)
    return model


def token_grid(values: Tensor, segment: Tensor, position: Tensor, shape: tuple[int, int]) -> Tensor:
    """Flat per-token `values` [N] laid out as [answers, tokens], right-padded with zeros (differentiable)."""
    return values.new_zeros(shape).index_put((segment, position), values)


@dataclass
class Experience:
    """A rollout with what PPO fixes at its first use: pi_old, V_old, advantages and returns, all [S, L]."""

    roll: Rollout
    position: Tensor       # [N] each answer token's index within its answer
    mask: Tensor
    old_logps: Tensor
    old_values: Tensor
    advantages: Tensor
    returns: Tensor
    kl: Tensor             # [S] summed per-token KL estimate of each answer
    born: int              # the step count when rolled out


class PPO:
    name = "ppo"

    def __init__(self):
        self.stats = PairStats()
        self.curves = Curves()
        self.steps_per_batch = 1

    def batches(self, records, tokenizer, cfg) -> list[PromptBatch]:
        return rl_batches(records, tokenizer, cfg, self.name)

    def prepare(self, model: nn.Module, tokenizer, cfg, batches: list[PromptBatch], out: Path) -> nn.Module:
        """Bind this run's settings, its reward function and the frozen reference; add the value head."""
        self.cfg, self.seq_len, self.tokenizer = cfg.ppo, cfg.seq_len, tokenizer
        self.reward = load_reward(cfg.ppo.reward)
        self.reference = frozen_reference(model)   # before the head: a full copy need not hold it
        self.stats, self.curves = PairStats(), Curves(out, CURVES + ("value_loss", "clipfrac"))
        self.steps_per_batch, self.experience, self.step = cfg.ppo.ppo_epochs, {}, 0
        return add_value_head(model)

    def experience_for(self, model: nn.Module, batch: PromptBatch) -> Experience | None:
        """This step's rollout of `batch` if an earlier step of the same PPO epochs made it, else None."""
        found = self.experience.get(id(batch)) if model.training else None
        return found if found is not None and self.step - found.born < self.cfg.ppo_epochs else None

    def first_use(self, roll: Rollout, logps: Tensor, values: Tensor) -> Experience:
        """Fix pi_old and V_old from this (first) forward pass and compute the KL-penalised GAE advantages."""
        c, b = self.cfg, roll.batch
        n = len(b.lengths)
        index = torch.arange(len(b.segment), device=b.segment.device)
        first = torch.full((n,), len(b.segment), device=index.device).scatter_reduce(0, b.segment, index, "amin")
        position = index - first[b.segment]
        shape = (n, int(b.lengths.max()))

        def grid(x: Tensor) -> Tensor:
            return token_grid(x, b.segment, position, shape)

        mask, old_logps, old_values = grid(torch.ones_like(logps)), grid(logps.detach()), grid(values.detach())
        kl = grid(kl_estimate(logps.detach(), roll.ref_token_logps, c.kl_estimator))
        rewards = -c.kl_coef * kl
        rewards[torch.arange(n, device=index.device), b.lengths - 1] += roll.rewards
        advantages, returns = gae_advantages(rewards, old_values, mask, c.gamma, c.lam)
        return Experience(roll, position, mask, old_logps, old_values, masked_whiten(advantages, mask) * mask,
                          returns, kl.sum(1), self.step)

    def loss(self, model: nn.Module, batch: PromptBatch) -> tuple[Tensor, int]:
        c = self.cfg
        exp = self.experience_for(model, batch)
        roll = exp.roll if exp is not None else rollout(model, self.reference, self.tokenizer, batch, self.reward, c.k,
                                                       c.max_new_tokens, c.temperature, self.seq_len)
        hidden = hidden_states(model, roll.batch)
        logps = target_logprobs(model, roll.batch, hidden).float()
        values = model.value_head(hidden[roll.batch.target_pos].float()).squeeze(-1)
        if exp is None:
            exp = self.first_use(roll, logps, values)
            if model.training:
                self.experience[id(batch)] = exp
        b = roll.batch
        shape = exp.mask.shape
        logps, values = (token_grid(x, b.segment, exp.position, shape) for x in (logps, values))
        policy, clipped = ppo_policy_loss(logps, exp.old_logps, exp.advantages, c.cliprange)
        value, _ = ppo_value_loss(values, exp.old_values, exp.returns, c.cliprange_value)
        lengths = b.lengths.float()
        per_answer = ((policy + c.vf_coef * value) * exp.mask).sum(1) / lengths
        self.stats.add(model.training, reward=roll.rewards, kl=exp.kl, length=lengths,
                       entropy=torch.full_like(lengths, float(-(logps.detach() * exp.mask).sum() / lengths.sum())),
                       value_loss=(value.detach() * exp.mask).sum(1) / lengths,
                       clipfrac=clipped[exp.mask.bool()].float())
        return per_answer.sum(), len(lengths)

    def pop_stats(self) -> dict[str, float]:
        """The step's means (the loop calls this once per step: it also ages the kept rollouts)."""
        self.step += 1
        self.experience = {k: e for k, e in self.experience.items() if self.step - e.born < self.cfg.ppo_epochs}
        return self.curves.keep(self.stats.pop())

    def draw(self) -> None:
        self.curves.draw()

    def save(self, model: nn.Module, path: Path) -> None:
        tmp = Path(path) / f".{HEAD_FILE}.tmp"
        save_file({k: v.detach().float().cpu().contiguous() for k, v in model.value_head.state_dict().items()}, tmp)
        os.replace(tmp, Path(path) / HEAD_FILE)

    def size(self, batch: PromptBatch) -> int:
        return len(batch.ids) * self.cfg.k

    def tokens(self, batch: PromptBatch) -> int:
        return batch.rollout_tokens


register(PPO())
