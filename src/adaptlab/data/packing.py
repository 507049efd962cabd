"""Sequence packing without cross-contamination, and padded batching.

Packing concatenates several examples into one row of `seq_len` tokens. Position ids restart at 0 at
every example boundary; transformers derives a block-diagonal causal mask from those restarts
(when no attention mask is passed and no KV cache is used), so no token attends across a boundary and
the packed loss equals the unpacked one (tests/test_templates_packing.py proves it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from adaptlab.data.templates import IGNORE, Example


@dataclass
class Batch:
    input_ids: torch.Tensor              # [B, T]
    labels: torch.Tensor                 # [B, T], IGNORE where no loss
    position_ids: torch.Tensor           # [B, T]
    attention_mask: torch.Tensor | None  # [B, T] for padded batches; None for packed ones
    n_real_tokens: int                   # tokens that are not padding (what throughput counts)
    segments: tuple[tuple[int, ...], ...] | None = None  # packed: each row's sequence lengths (pad tail last)

    @property
    def n_targets(self) -> int:
        """Tokens that carry loss (after the causal shift)."""
        return int((self.labels[:, 1:] != IGNORE).sum())

    def to(self, device: torch.device) -> Batch:
        mask = self.attention_mask.to(device) if self.attention_mask is not None else None
        return replace(self, input_ids=self.input_ids.to(device), labels=self.labels.to(device),
                       position_ids=self.position_ids.to(device), attention_mask=mask)


def pack(examples: list[Example], seq_len: int, pad_id: int) -> list[list[Example]]:
    """Group examples into bins of at most `seq_len` tokens (first-fit decreasing, deterministic).

    First-fit decreasing keeps the pad waste small; examples longer than `seq_len` must be truncated
    before packing.
    """
    too_long = [len(e) for e in examples if len(e) > seq_len]
    if too_long:
        raise ValueError(f"{len(too_long)} examples are longer than seq_len={seq_len} (max {max(too_long)}); "
                         "truncate them first")
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i]), i))
    bins: list[list[Example]] = []
    room: list[int] = []
    for i in order:
        n = len(examples[i])
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(examples[i])
                room[b] -= n
                break
        else:
            bins.append([examples[i]])
            room.append(seq_len - n)
    return bins


def collate_packed(rows: list[list[Example]], seq_len: int, pad_id: int) -> Batch:
    """Stack packed rows into a batch; position ids restart per example, pad tails carry no loss."""
    ids, labels, pos, segments = [], [], [], []
    for row in rows:
        r_ids, r_lab, r_pos = [], [], []
        for ex in row:
            r_ids += ex.input_ids
            r_lab += ex.labels
            r_pos += list(range(len(ex)))
        pad = seq_len - len(r_ids)
        r_ids += [pad_id] * pad
        r_lab += [IGNORE] * pad
        r_pos += list(range(pad))  # the tail is its own (ignored) segment
        segments.append(tuple(len(ex) for ex in row) + ((pad,) if pad else ()))
        ids.append(r_ids)
        labels.append(r_lab)
        pos.append(r_pos)
    real = sum(len(ex) for row in rows for ex in row)
    return Batch(torch.tensor(ids), torch.tensor(labels), torch.tensor(pos), None, real, tuple(segments))


def collate_padded(examples: list[Example], pad_id: int, pad_to: int | None = None) -> Batch:
    """Right-pad examples to the longest one (or `pad_to`), one example per row."""
    width = pad_to or max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), IGNORE)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, ex in enumerate(examples):
        n = len(ex)
        ids[i, :n] = torch.tensor(ex.input_ids)
        labels[i, :n] = torch.tensor(ex.labels)
        mask[i, :n] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(ids, labels, pos, mask, int(mask.sum()))
