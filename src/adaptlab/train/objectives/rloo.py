"""RLOO: REINFORCE with a leave-one-out baseline, learning from a reward function (Ahmadian et al. 2024,
arXiv:2402.14740; as trl's RLOOTrainer).

Every micro-batch of prompts is rolled out first (train/objectives/rollout.py): k samples per prompt from the
current policy, scored by the reward function `rloo.reward`, with their log-probs under the frozen reference.
The reward carries a sequence-level KL penalty, the sum over the answer's tokens of a per-token estimate (k1 by
default, as the paper and trl: then it is log pi(y_i|x) - log pi_ref(y_i|x); `rloo.kl_estimator: k3` for the
non-negative, lower-variance one, train/losses.kl_estimate):

    R_i = r_i - beta sum_t kl_t(y_i),    A_i = R_i - 1/(k-1) sum_{j != i} R_j

and one policy-gradient step on  L = -sum_i A_i log pi(y_i|x)  (each rollout is used once, so trl's clipped
ratio is 1 and this is its loss). Logged per step (and as `eval_*` on held-out prompts): mean reward, the
sequence KL to the reference, the response length in tokens and an entropy estimate (the mean negative
log-prob of the sampled tokens); `rl_curves.png` in the run directory plots them, drawn by the main process at
evaluations, checkpoints and the end (the loop's `draw` hook).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from adaptlab.train.losses import kl_estimate, rloo_advantages, sequence_sums
from adaptlab.train.objectives.base import register
from adaptlab.train.objectives.pairs import PairStats, target_logprobs
from adaptlab.train.objectives.rollout import Curves, PromptBatch, frozen_reference, rl_batches, rollout
from adaptlab.train.rewards import load_reward


class RLOO:
    name = "rloo"

    def __init__(self):
        self.stats = PairStats()
        self.curves = Curves()

    def batches(self, records, tokenizer, cfg) -> list[PromptBatch]:
        return rl_batches(records, tokenizer, cfg, self.name)

    def prepare(self, model: nn.Module, tokenizer, cfg, batches: list[PromptBatch], out: Path) -> nn.Module:
        """Bind this run's settings, its reward function and the frozen reference."""
        self.cfg, self.seq_len, self.tokenizer = cfg.rloo, cfg.seq_len, tokenizer
        self.reward = load_reward(cfg.rloo.reward)
        self.reference = frozen_reference(model)
        self.stats, self.curves = PairStats(), Curves(out)
        return model

    def loss(self, model: nn.Module, batch: PromptBatch) -> tuple[Tensor, int]:
        c = self.cfg
        roll = rollout(model, self.reference, self.tokenizer, batch, self.reward, c.k, c.max_new_tokens,
                       c.temperature, self.seq_len)
        token_logps = target_logprobs(model, roll.batch).float()
        segment, n = roll.batch.segment, len(roll.batch.lengths)
        logps = sequence_sums(token_logps, segment, n)
        kl = sequence_sums(kl_estimate(token_logps.detach(), roll.ref_token_logps, c.kl_estimator), segment, n)
        advantages = rloo_advantages(roll.rewards - c.kl_coef * kl, c.k, c.normalize_advantages)
        lengths = roll.batch.lengths.float()
        self.stats.add(model.training, reward=roll.rewards, kl=kl, length=lengths,
                       entropy=torch.full_like(lengths, float(-logps.detach().sum() / lengths.sum())))
        return -(advantages * logps).sum(), len(lengths)

    def pop_stats(self) -> dict[str, float]:
        return self.curves.keep(self.stats.pop())

    def draw(self) -> None:
        self.curves.draw()

    def size(self, batch: PromptBatch) -> int:
        return len(batch.ids) * self.cfg.k

    def tokens(self, batch: PromptBatch) -> int:
        return batch.rollout_tokens


register(RLOO())
