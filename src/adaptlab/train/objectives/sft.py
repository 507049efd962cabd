"""Supervised fine-tuning: next-token cross-entropy on the response tokens only.

    L = - sum_{t in response} log p(x_t | x_<t)    (divided by the number of response tokens in the step)

Examples are packed into rows of `seq_len` tokens (or padded, one per row, with `packing: false`).
The loss reads the decoder's hidden states and computes logits only at target positions, in chunks
(`linear_cross_entropy`): prompt tokens never pay for a vocabulary-sized projection.
"""

from __future__ import annotations

import logging

from torch import Tensor, nn

from adaptlab.data.packing import Batch, collate_packed, collate_padded, pack
from adaptlab.data.records import require_responses
from adaptlab.data.templates import IGNORE, tokenize_record
from adaptlab.methods.base import base_model_of
from adaptlab.train.attention import segment_kwargs
from adaptlab.train.losses import linear_cross_entropy
from adaptlab.train.objectives.base import register

log = logging.getLogger(__name__)


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The transformer body and the output projection of a causal LM, through peft wrappers."""
    inner = base_model_of(model)
    return inner.model, inner.get_output_embeddings()


def response_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Summed next-token cross-entropy over the labelled positions of `batch`."""
    body, head = decoder_and_head(model)
    hidden = body(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=batch.attention_mask,
                  use_cache=False, **segment_kwargs(batch.segments)).last_hidden_state
    targets = batch.labels[:, 1:]
    keep = targets != IGNORE
    h = hidden[:, :-1][keep]
    weight = head.weight
    if h.dtype != weight.dtype:  # autocast: the head computes in the activations' dtype
        weight = weight.to(h.dtype)
    return linear_cross_entropy(h, weight, targets[keep])


class SFT:
    name = "sft"

    def batches(self, records, tokenizer, cfg) -> list[Batch]:
        require_responses(records, self.name)
        examples = [tokenize_record(r, tokenizer, max_len=cfg.seq_len) for r in records]
        examples = [e for e in examples if e.n_targets > 0]
        if not examples:
            raise ValueError("no example has response tokens within seq_len; raise seq_len or check the data")
        pad = tokenizer.pad_token_id
        if cfg.packing:
            rows = pack(examples, cfg.seq_len, pad)
            return [collate_packed(rows[i:i + cfg.batch_size], cfg.seq_len, pad)
                    for i in range(0, len(rows), cfg.batch_size)]
        return [collate_padded(examples[i:i + cfg.batch_size], pad) for i in range(0, len(examples), cfg.batch_size)]

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, int]:
        return response_loss(model, batch), batch.n_targets

    def size(self, batch: Batch) -> int:
        return batch.n_targets

    def tokens(self, batch: Batch) -> int:
        return batch.n_real_tokens


register(SFT())
