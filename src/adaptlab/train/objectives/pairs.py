"""Preference pairs as packed token batches, shared by the reward and DPO objectives.

Each pair becomes two sequences, prompt + chosen and prompt + rejected, rendered through the chat template
(or as plain text + EOS when the tokenizer has none); the prompt is the longest token prefix both share with
the prompt alone (as trl does), and only response tokens are targets. The sequences of a micro-batch are
packed into rows of `seq_len` (position ids restart per sequence, so none attends across a boundary) and
every target remembers its sequence: sequence 2i is pair i's chosen side, 2i+1 its rejected side.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from adaptlab.data.packing import Batch, collate_packed, pack
from adaptlab.data.records import Preference, Record, require_responses
from adaptlab.data.templates import IGNORE, Example
from adaptlab.train.attention import segment_kwargs
from adaptlab.train.losses import sequence_sums, token_logprobs
from adaptlab.train.objectives.sft import decoder_and_head

log = logging.getLogger(__name__)


@dataclass
class PairBatch:
    rows: Batch            # packed rows [R, T]
    target_pos: Tensor     # [N] flat index (row * T + t) of the hidden state that predicts each target
    targets: Tensor        # [N] target token ids
    segment: Tensor        # [N] the sequence each target belongs to
    last_pos: Tensor       # [2P] flat index of each sequence's last token
    lengths: Tensor        # [2P] response tokens per sequence
    ref: Tensor | None = None  # [2P] reference log-probs (DPO)

    @property
    def n_pairs(self) -> int:
        return len(self.lengths) // 2

    def to(self, device: torch.device) -> PairBatch:
        moved = {k: v.to(device) for k, v in self.__dict__.items() if isinstance(v, Tensor)}
        return replace(self, rows=self.rows.to(device), **moved)


def _plain_prompt(prompt: str | list[dict[str, str]]) -> str:
    if isinstance(prompt, str):
        return prompt
    return "".join(f"{t['role']}: {t['content']}\n" for t in prompt) + "assistant: "


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def render_responses(prompt: str | list[dict[str, str]], answers: list[str],
                     tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[list[int]]]:
    """(prompt ids, each answer's ids): chat template when the tokenizer has one, else text + EOS. The prompt
    is the longest prefix every rendering shares with the prompt alone (as trl does)."""
    if tokenizer.chat_template is not None:
        msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]

        def render(answer: str | None) -> list[int]:
            turns = msgs + ([{"role": "assistant", "content": answer}] if answer is not None else [])
            return list(tokenizer.apply_chat_template(turns, tokenize=True, add_generation_prompt=answer is None,
                                                      return_dict=False))
    else:
        text = _plain_prompt(prompt)

        def render(answer: str | None) -> list[int]:
            return tokenizer.encode(text) if answer is None else tokenizer.encode(text + answer) + [tokenizer.eos_token_id]
    head, full = render(None), [render(a) for a in answers]
    cut = min(_common_prefix(head, f) for f in full)
    return head[:cut], [f[cut:] for f in full]


def response_example(prompt: list[int], answer: list[int], seq_len: int) -> Example:
    """prompt + answer cut to `seq_len` tokens, with the answer as targets."""
    ids = (prompt + answer)[:seq_len]
    return Example(ids, [IGNORE] * len(prompt) + ids[len(prompt):])


def pair_examples(records: list[Record], tokenizer: PreTrainedTokenizerBase, seq_len: int) -> list[Example]:
    """Two examples per pair (chosen, rejected), responses cut to fit `seq_len`; pairs whose prompt alone
    fills `seq_len` are skipped and counted in the log."""
    out, skipped = [], 0
    for record in records:
        if not isinstance(record, Preference):
            raise TypeError(f"preference objectives need preference records, got {type(record).__name__}")
        prompt, answers = render_responses(record.prompt, [record.chosen, record.rejected], tokenizer)
        if len(prompt) >= seq_len - 1:
            skipped += 1
            continue
        out.extend(response_example(prompt, answer, seq_len) for answer in answers)
    if skipped:
        log.warning("%d of %d preference pairs skipped: the prompt alone fills seq_len=%d", skipped, len(records), seq_len)
    if not out:
        raise ValueError(f"every preference pair's prompt fills seq_len={seq_len}; raise seq_len")
    return out


def collate_pairs(examples: list[Example], seq_len: int, pad_id: int) -> PairBatch:
    """Pack the (chosen, rejected, chosen, ...) examples of a micro-batch and index their targets."""
    bins = pack(examples, seq_len, pad_id)
    rows = collate_packed(bins, seq_len, pad_id)
    index = {id(ex): i for i, ex in enumerate(examples)}
    target_pos, targets, segment = [], [], []
    last_pos, lengths = [0] * len(examples), [0] * len(examples)
    for r, row in enumerate(bins):
        offset = r * seq_len
        for ex in row:
            seq = index[id(ex)]
            for t in range(1, len(ex)):
                if ex.labels[t] != IGNORE:
                    target_pos.append(offset + t - 1)
                    targets.append(ex.labels[t])
                    segment.append(seq)
            last_pos[seq], lengths[seq] = offset + len(ex) - 1, ex.n_targets
            offset += len(ex)
    target_pos, targets, segment, last_pos, lengths = (torch.tensor(xs, dtype=torch.long)
                                                       for xs in (target_pos, targets, segment, last_pos, lengths))
    return PairBatch(rows, target_pos, targets, segment, last_pos, lengths)


def pair_batches(records: list[Record], tokenizer: PreTrainedTokenizerBase, cfg) -> list[PairBatch]:
    """Micro-batches of `cfg.batch_size` pairs each, packed into rows of `cfg.seq_len`."""
    examples = pair_examples(records, tokenizer, cfg.seq_len)
    step = 2 * cfg.batch_size
    return [collate_pairs(examples[i:i + step], cfg.seq_len, tokenizer.pad_token_id)
            for i in range(0, len(examples), step)]


def hidden_states(model: nn.Module, batch: PairBatch) -> Tensor:
    """The decoder's last hidden states, flattened to [R * T, H]."""
    body, _ = decoder_and_head(model)
    rows = batch.rows
    hidden = body(input_ids=rows.input_ids, position_ids=rows.position_ids, use_cache=False,
                  **segment_kwargs(rows.segments)).last_hidden_state
    return hidden.flatten(0, 1)


def target_logprobs(model: nn.Module, batch: PairBatch, hidden: Tensor | None = None) -> Tensor:
    """log pi(y_t | x, y_<t) of every target token, [N], from `hidden` (`hidden_states`) when given."""
    _, head = decoder_and_head(model)
    h = (hidden_states(model, batch) if hidden is None else hidden)[batch.target_pos]
    weight = head.weight if head.weight.dtype == h.dtype else head.weight.to(h.dtype)
    return token_logprobs(h, weight, batch.targets)


def sequence_logprobs(model: nn.Module, batch: PairBatch) -> Tensor:
    """log pi(y|x) of every sequence in the batch, [2P] (chosen at even, rejected at odd indices)."""
    return sequence_sums(target_logprobs(model, batch), batch.segment, len(batch.lengths))


def batches_digest(batches: list[PairBatch], *parts: str) -> str:
    """sha256 over `parts` (model, method, dtype) and the token ids of every batch."""
    h = hashlib.sha256("\n".join(parts).encode())
    for b in batches:
        h.update(b.rows.input_ids.numpy().tobytes())
        h.update(b.target_pos.numpy().tobytes())
    return h.hexdigest()


class PairStats:
    """Pair-weighted means of per-pair values, kept apart for training and evaluation."""

    def __init__(self):
        self.sums: dict[str, Tensor] = {}   # kept on the device: no host sync inside the loss
        self.count: dict[str, int] = {}

    def add(self, training: bool, **values: Tensor) -> None:
        prefix = "" if training else "eval_"
        for key, v in values.items():
            name = prefix + key
            total = v.detach().float().sum().double()   # as before: a float32 sum, accumulated in double
            self.sums[name] = self.sums[name] + total if name in self.sums else total
            self.count[name] = self.count.get(name, 0) + v.numel()

    def pop(self) -> dict[str, float]:
        out = {k: float(s) / max(self.count[k], 1) for k, s in self.sums.items()}
        self.sums.clear()
        self.count.clear()
        return out


class PairObjective:
    """What every objective on chosen/rejected pairs shares: packed pair batches, counts and logged stats.
    A subclass gives `name`, `prepare` and `loss` (which adds its values to `self.stats`)."""

    def __init__(self):
        self.stats = PairStats()

    def batches(self, records: list[Record], tokenizer: PreTrainedTokenizerBase, cfg) -> list[PairBatch]:
        require_responses(records, self.name)
        return pair_batches(records, tokenizer, cfg)

    def pop_stats(self) -> dict[str, float]:
        return self.stats.pop()

    def size(self, batch: PairBatch) -> int:
        return batch.n_pairs

    def tokens(self, batch: PairBatch) -> int:
        return batch.rows.n_real_tokens
