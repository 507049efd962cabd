"""Reward model: a scalar head on the base (any method; the head always trains), fitted to preference pairs.

    r(x, y) = w . h_last(x, y)            (h_last: the decoder's hidden state at the sequence's last token)
    L = -log sigmoid(r(x, y_w) - r(x, y_l))    (Bradley-Terry; InstructGPT, Ouyang et al. 2022, arXiv:2203.02155)

The loss is in train/losses.py. Logged for training and held-out pairs: `accuracy` (share of pairs whose
chosen side scores higher) and the reward `margin`. The artifact is the method's usual files plus
`reward_head.safetensors`, so `adaptlab.train.rewards.load_reward(<final dir>)` scores completions with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from adaptlab.train.losses import bradley_terry_loss
from adaptlab.train.objectives.base import register
from adaptlab.train.objectives.pairs import PairBatch, PairObjective, PairStats, hidden_states

HEAD_FILE = "reward_head.safetensors"


def add_reward_head(model: nn.Module) -> nn.Module:
    """Attach a trainable fp32 `reward_head` (hidden -> 1, no bias, zero start) to `model`."""
    hidden = model.get_input_embeddings().weight.shape[1]
    device = next(model.parameters()).device
    model.reward_head = nn.Linear(hidden, 1, bias=False, device=device, dtype=torch.float32)
    nn.init.zeros_(model.reward_head.weight)
    return model


def sequence_rewards(model: nn.Module, batch: PairBatch) -> Tensor:
    """r(x, y) of every sequence in the batch, [S], from its last token's hidden state."""
    pooled = hidden_states(model, batch)[batch.last_pos]
    return model.reward_head(pooled.float()).squeeze(-1)


def save_head(model: nn.Module, path: Path) -> None:
    tmp = Path(path) / f".{HEAD_FILE}.tmp"
    save_file({"weight": model.reward_head.weight.detach().float().cpu().contiguous()}, tmp)
    os.replace(tmp, Path(path) / HEAD_FILE)


class Reward(PairObjective):
    name = "reward"

    def prepare(self, model: nn.Module, tokenizer, cfg, batches: list[PairBatch], out: Path) -> nn.Module:
        self.stats = PairStats()
        return add_reward_head(model)

    def loss(self, model: nn.Module, batch: PairBatch) -> tuple[Tensor, int]:
        r = sequence_rewards(model, batch)
        chosen, rejected = r[0::2], r[1::2]
        self.stats.add(model.training, accuracy=(chosen > rejected).float(), margin=(chosen - rejected).detach())
        return bradley_terry_loss(chosen, rejected).sum(), batch.n_pairs

    def save(self, model: nn.Module, path: Path) -> None:
        save_head(model, path)


register(Reward())
