"""Direct preference optimisation: learn from pairs without a reward model.

    L = -log sigmoid(beta [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))])

(Rafailov et al. 2023, arXiv:2305.18290; `dpo.loss: ipo` gives IPO, Azar et al. 2023, arXiv:2310.12036; the
maths is in train/losses.py). The reference policy is the model before training: its log-probs are computed
once, before the first step, with the adapter disabled when the method has one (so no second model is held),
and kept on disk with the run under a key of model, method, dtype and token ids, so a resumed or repeated run
reads them instead of recomputing. Logged: chosen/rejected implicit rewards, their margin and the share of
pairs whose chosen side wins (`accuracy`), for training and held-out pairs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from adaptlab.train.losses import dpo_loss
from adaptlab.train.objectives.base import register
from adaptlab.train.objectives.pairs import PairBatch, PairObjective, PairStats, batches_digest, sequence_logprobs

log = logging.getLogger(__name__)


def reference_context(model: nn.Module):
    """The frozen reference: the adapter switched off for peft models, else the model as it is now."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if callable(disable) else contextlib.nullcontext()


@torch.no_grad()
def reference_logprobs(model: nn.Module, batches: list[PairBatch]) -> list[Tensor]:
    """Sequence log-probs of every batch under the reference policy (eval mode, no dropout)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with reference_context(model):
            return [sequence_logprobs(model, b.to(device)).float().cpu() for b in batches]
    finally:
        model.train(was_training)


def cached_reference(model: nn.Module, batches: list[PairBatch], cfg, out: Path) -> list[Tensor]:
    """Reference log-probs from `<output_dir>/reference/<key>.safetensors`, computed and written (atomically)
    when missing."""
    key = batches_digest(batches, cfg.model, json.dumps(cfg.method.model_dump(), sort_keys=True), cfg.dtype)
    path = Path(out) / "reference" / f"{key[:32]}.safetensors"
    if cfg.dpo.cache_reference and path.exists():
        log.info("reference log-probs read from %s", path)
        stored = load_file(path)
        return [stored[f"b{i}"] for i in range(len(batches))]
    refs = reference_logprobs(model, batches)
    if cfg.dpo.cache_reference:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({f"b{i}": r for i, r in enumerate(refs)}, tmp)
        os.replace(tmp, path)
        log.info("reference log-probs of %d batches written to %s", len(batches), path)
    return refs


class DPO(PairObjective):
    name = "dpo"

    def __init__(self):
        super().__init__()
        self.beta, self.kind = 0.1, "sigmoid"

    def prepare(self, model: nn.Module, tokenizer, cfg, batches: list[PairBatch], out: Path) -> nn.Module:
        """Bind this run's settings and attach the reference log-probs to every batch."""
        self.beta, self.kind = cfg.dpo.beta, cfg.dpo.loss
        self.stats = PairStats()
        for batch, ref in zip(batches, cached_reference(model, batches, cfg, out)):
            batch.ref = ref
        return model

    def loss(self, model: nn.Module, batch: PairBatch) -> tuple[Tensor, int]:
        logps = sequence_logprobs(model, batch).float()
        ref = batch.ref.to(logps.device)
        lengths = batch.lengths.to(logps.dtype)
        loss, chosen, rejected = dpo_loss(logps[0::2], logps[1::2], ref[0::2], ref[1::2], self.beta, self.kind,
                                          lengths[0::2], lengths[1::2])
        self.stats.add(model.training, accuracy=(chosen > rejected).float(), margin=chosen - rejected,
                       reward_chosen=chosen, reward_rejected=rejected)
        return loss.sum(), batch.n_pairs


register(DPO())
