"""Step-level decoding for continuous batching: rows join and leave a running batch between steps.

A `Lane` holds the rows that share one forward pass and one batched KV cache. The cache is left-padded:
row b's real tokens sit at the right end of `mask[b]`, and each row's position ids count only its own
real tokens, so a row computes exactly what it would compute alone (up to float rounding). Between steps:

* `queue(rows)` lays the new prompts out as one left-padded batch and `prefill(budget)` feeds queued
  prompts about `budget` tokens at a time (chunked prefill); a batch whose prompts are complete samples its
  first tokens and its cache is concatenated to the lane's (the shorter side is padded on the left, masked
  out). `join(rows)` does both at once. A prompt prefix the joining rows share (a chat template's system
  prompt, a few-shot block) is computed once per adapter and kept for later joins, so those rows only
  prefill their own suffix (prefix caching as in vLLM; the rows are laid out [prefix | padding | suffix]);
* `step()` feeds every row its last token and samples the next one (its key and value are written in
  place into spare room at the end of the cache, not concatenated: no copy of the cache per step), each row with its own
  temperature / top-p / seed / stop strings and its own adapter (the lane's `forward` routes rows);
* `remove(ids)` drops finished or cancelled rows and trims columns that only padding uses.

Sampling: temperature T scales the logits (p ~ softmax(z / T)); top-p (Holtzman et al. 2020, "The
Curious Case of Neural Text Degeneration", arXiv:1904.09751) keeps the smallest set of most likely
tokens whose probability reaches p. T = 0 is greedy.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from adaptlab.models.generation import MIN_SHARED_PREFIX, left_padded, shared_prefix_len, truncate_at_stop

# forward(adapter per row, **model inputs) -> model output with .logits and .cache
Forward = Callable[..., object]
_ids = itertools.count()
ROOM = 64           # tokens of spare room a lane's cache grows by
KEPT_PREFIXES = 8   # shared prompt prefixes whose KV a lane keeps (per adapter, batch 1: small)


@dataclass
class SamplingParams:
    """What one request asks of the sampler."""

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


def sample_tokens(logits: torch.Tensor, params: list[SamplingParams],
                  generators: list[torch.Generator | None]) -> list[int]:
    """Next token of every row from logits [batch, vocab]: greedy rows (temperature 0) by one argmax, the
    others by temperature + top-p over their rows at once; a seeded row draws with its own generator."""
    logits = logits.float()   # argmax over bf16 is not vectorised on CPU: 5x slower than the cast and fp32 argmax
    tokens = logits.argmax(-1).tolist()
    hot = [b for b, p in enumerate(params) if p.temperature > 0]
    if not hot:
        return tokens
    temperature = torch.tensor([params[b].temperature for b in hot], device=logits.device)
    probs = torch.softmax(logits[hot] / temperature[:, None], dim=-1)
    top_p = torch.tensor([params[b].top_p for b in hot], device=logits.device)
    if bool((top_p < 1).any()):
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep a token while the mass before it is below p (the first token is always kept)
        keep = (sorted_p.cumsum(-1) - sorted_p) < top_p[:, None]
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
    free = [j for j, b in enumerate(hot) if generators[b] is None]
    if free:   # rows without a seed share one draw
        for j, t in zip(free, torch.multinomial(probs[free], 1)[:, 0].tolist(), strict=True):
            tokens[hot[j]] = t
    for j, b in enumerate(hot):
        if generators[b] is not None:
            tokens[b] = int(torch.multinomial(probs[j], 1, generator=generators[b]))
    return tokens


@dataclass
class Row:
    """One sequence being generated: its tokens, sampling state and the text released so far."""

    prompt: list[int]
    params: SamplingParams
    adapter: str
    tokenizer: object
    eos: frozenset[int]
    max_len: int
    id: int = field(default_factory=lambda: next(_ids))
    generated: list[int] = field(default_factory=list)
    sent: int = 0                      # characters of the text already released
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        self.generator = None
        if self.params.seed is not None:
            self.generator = torch.Generator().manual_seed(self.params.seed)

    def advance(self, token: int) -> str:
        """Record a sampled token; return the text it releases (held back while a stop string may start)."""
        if token in self.eos:
            self.finish_reason = "stop"
            return self._release(self.text(), final=True)
        self.generated.append(token)
        text = self.text()
        cut = truncate_at_stop(text, self.params.stop)
        if len(cut) < len(text):
            self.finish_reason = "stop"
            return self._release(cut, final=True)
        if len(self.generated) >= self.params.max_tokens or len(self.prompt) + len(self.generated) >= self.max_len:
            self.finish_reason = "length"
            return self._release(text, final=True)
        return self._release(text, final=False)

    def text(self) -> str:
        return self.tokenizer.decode(self.generated, skip_special_tokens=True)

    def _release(self, text: str, final: bool) -> str:
        end = len(text)
        if not final:
            hold = max((len(s) - 1 for s in self.params.stop), default=0)
            end = len(text.rstrip("\ufffd")) - hold   # an incomplete UTF-8 character decodes to U+FFFD
        if end <= self.sent:
            return ""
        out, self.sent = text[self.sent:end], end
        return out


def _left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """Pad `t` with zeros on the left of `dim` up to `width`."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _concat(a: DynamicCache, mask_a: torch.Tensor, b: DynamicCache, mask_b: torch.Tensor
            ) -> tuple[DynamicCache, torch.Tensor]:
    """Stack two left-padded batch caches along the batch, padding the shorter one on the left."""
    width = max(mask_a.shape[1], mask_b.shape[1])
    out = DynamicCache()
    for i, (la, lb) in enumerate(zip(a.layers, b.layers, strict=True)):
        keys = torch.cat([_left_pad(la.keys, width, 2), _left_pad(lb.keys, width, 2)])
        values = torch.cat([_left_pad(la.values, width, 2), _left_pad(lb.values, width, 2)])
        out.update(keys, values, i)
    return out, torch.cat([_left_pad(mask_a, width, 1), _left_pad(mask_b, width, 1)])


class _RoomyLayer(DynamicLayer):
    """A cache layer whose keys and values are views of buffers with room for more tokens, so an update
    writes in place instead of concatenating (copying) the whole layer as DynamicLayer does. Tensors set
    from outside (rows joined, removed or trimmed) move into a new buffer at the next update."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values
        self.room: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n, m = self.keys.shape[-2], key_states.shape[-2]
        if not self._in_room() or n + m > self.room[0].shape[-2]:
            self.room = (_with_room(self.keys, n + m + ROOM), _with_room(self.values, n + m + ROOM))
        keys, values = self.room
        keys[:, :, n:n + m], values[:, :, n:n + m] = key_states, value_states
        self.keys, self.values = keys[:, :, :n + m], values[:, :, :n + m]
        return self.keys, self.values

    def _in_room(self) -> bool:
        return self.room is not None and all(
            t.data_ptr() == buf.data_ptr() and t.shape[0] == buf.shape[0]
            for t, buf in zip((self.keys, self.values), self.room, strict=True))


def _with_room(t: torch.Tensor, width: int) -> torch.Tensor:
    out = t.new_empty((*t.shape[:2], width, t.shape[3]))
    out[:, :, : t.shape[2]] = t
    return out


def _last(ids: torch.Tensor) -> torch.Tensor:
    """`logits_to_keep` that projects only each row's last position, as an index rather than the int 1: the
    int slices a non-contiguous [batch, 1, hidden] view, and torch's matmul then expands the LM head's
    weight to a contiguous copy per row (batch x vocab x hidden: ~1 s for 14 rows of a 135M model, against
    ~5 ms for the indexed, contiguous rows). A batch of one token per row is contiguous either way."""
    return torch.tensor([ids.shape[1] - 1], device=ids.device)


def _roomy(cache: DynamicCache) -> DynamicCache:
    out = DynamicCache()
    out.layers = [_RoomyLayer(layer.keys, layer.values) for layer in cache.layers]
    return out


@dataclass
class _Prefill:
    """Prompts being prefilled, a chunk of columns at a time. `ids` holds the columns still to feed after a
    shared prefix (left-padded), `mask` every column from the first (the prefix's included), `done` how many
    columns of `ids` the cache holds. Rows start from `kv`, the prefix's KV per adapter; a job without rows
    computes that prefix for `adapters` and stores it in `kv` when done."""

    adapters: list[str]
    ids: torch.Tensor
    mask: torch.Tensor
    rows: list[Row]
    kv: dict[str, list[tuple[torch.Tensor, torch.Tensor]] | None] | None
    cache: DynamicCache | None = None
    done: int = 0

    def select(self, keep: list[int], device: torch.device) -> None:
        """Keep only the rows at `keep` (the others were cancelled)."""
        self.rows = [self.rows[b] for b in keep]
        self.adapters = [self.adapters[b] for b in keep]
        self.ids, self.mask = self.ids[keep], self.mask[keep]
        if self.cache is not None:
            self.cache.batch_select_indices(torch.tensor(keep, device=device))


class Lane:
    """Rows decoded together: one batched, left-padded KV cache; rows join and leave between steps.

    Joining rows wait in `pending` until `prefill` has fed their whole prompt, a chunk of columns per call
    (chunked prefill as in Agrawal et al. 2024, "Taming Throughput-Latency Tradeoff in LLM Inference with
    Sarathi-Serve", OSDI), so a long prompt delays the running rows' next token by one chunk, not by its
    whole prefill."""

    def __init__(self, forward: Forward, pad_id: int, device: torch.device | str = "cpu"):
        self.forward, self.pad_id, self.device = forward, pad_id, torch.device(device)
        self.rows: list[Row] = []
        self.pending: deque[_Prefill] = deque()
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros((0, 0), dtype=torch.long)
        # shared prompt prefix -> adapter -> that prefix's KV (per layer: keys, values of batch 1); None while a
        # job queued ahead computes it
        self.prefixes: OrderedDict[tuple[int, ...], dict[str, list[tuple[torch.Tensor, torch.Tensor]] | None]] = \
            OrderedDict()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def members(self) -> list[Row]:
        """Rows decoding and rows still being prefilled."""
        return self.rows + [r for job in self.pending for r in job.rows]

    def join(self, rows: list[Row]) -> list[tuple[Row, str]]:
        """Prefill `rows` (and anything queued before them) whole, sample their first tokens, add them."""
        self.queue(rows)
        return self.prefill()[0]

    def queue(self, rows: list[Row]) -> None:
        """Queue `rows` for `prefill` as one left-padded batch, after their shared prefix's job if one is needed."""
        plen, kv = self._shared_prefix(rows)
        ids, mask = left_padded([list(r.prompt) for r in rows], plen, self.pad_id)
        self.pending.append(_Prefill([r.adapter for r in rows], ids[:, plen:], mask, list(rows), kv))

    def prefill(self, budget: int | None = None) -> tuple[list[tuple[Row, str]], int]:
        """Feed queued prompts first in, first out: about `budget` tokens (rows x columns; None: all of them),
        at least one column. Rows whose prompt is complete sample their first token and join the batch.
        Returns the (row, released text) pairs and the tokens fed."""
        released, used = [], 0
        while self.pending:
            job = self.pending[0]
            width = job.ids.shape[1] - job.done
            if budget is not None:
                width = min(width, (budget - used) // len(job.adapters))
                if width <= 0 and used:
                    break
                width = max(width, 1)
            logits = self._feed(job, width)
            used += width * len(job.adapters)
            if job.done == job.ids.shape[1]:
                self.pending.popleft()
                released += self._finish(job, logits)
        return released, used

    def step(self) -> list[tuple[Row, str]]:
        """Decode one token for every row; returns (row, released text) pairs."""
        if not self.rows:
            return []
        ids = torch.tensor([[r.generated[-1]] for r in self.rows], dtype=torch.long)
        self.mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=torch.long)], dim=1)
        out = self._run([r.adapter for r in self.rows], ids, self.mask, self.cache)
        self.cache = out.cache
        return self._sample(self.rows, out.logits[:, -1])

    def remove(self, ids: set[int]) -> None:
        """Drop rows by id (finished, cancelled; decoding or still queued) and the cache columns only padding
        still uses."""
        for job in [j for j in self.pending if j.rows]:
            keep = [b for b, r in enumerate(job.rows) if r.id not in ids]
            if not keep:
                self.pending.remove(job)
            elif len(keep) < len(job.rows):
                job.select(keep, self.device)
        keep = [b for b, r in enumerate(self.rows) if r.id not in ids]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[b] for b in keep]
        if not keep:
            self.cache, self.mask = None, torch.zeros((0, 0), dtype=torch.long)
            return
        self.cache.batch_select_indices(torch.tensor(keep, device=self.device))
        self.mask = self.mask[keep]
        first = int(self.mask.any(0).long().argmax())   # leading columns that every row pads
        if first:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]

    def _shared_prefix(self, rows: list[Row]) -> tuple[int, dict | None]:
        """The longest prefix every joining prompt shares (one kept from an earlier join, else their common
        prefix when >= MIN_SHARED_PREFIX tokens) and its KV per adapter; a job computing it under the rows'
        adapters not seen with it yet is queued."""
        limit = min(len(r.prompt) for r in rows) - 1   # every row keeps >= 1 own token to feed
        kept = [p for p in self.prefixes if shared_prefix_len([p, *(r.prompt for r in rows)], limit) == len(p)]
        if kept:
            prefix = max(kept, key=len)
        else:   # a lone row shares nothing yet: its whole prompt would be a useless prefix
            shared = shared_prefix_len([r.prompt for r in rows], limit) if len(rows) > 1 else 0
            prefix = tuple(rows[0].prompt[:shared])
        if len(prefix) < MIN_SHARED_PREFIX:
            return 0, None
        per_adapter = self.prefixes.setdefault(prefix, {})
        self.prefixes.move_to_end(prefix)
        while len(self.prefixes) > KEPT_PREFIXES:
            self.prefixes.popitem(last=False)
        missing = sorted({r.adapter for r in rows} - per_adapter.keys())
        if missing:   # one job for the prefix under every adapter not seen with it yet
            per_adapter.update(dict.fromkeys(missing))
            ids = torch.tensor([prefix] * len(missing), dtype=torch.long)
            self.pending.append(_Prefill(missing, ids, torch.ones_like(ids), [], per_adapter))
        return len(prefix), per_adapter

    def _feed(self, job: _Prefill, width: int) -> torch.Tensor:
        """Run the next `width` columns of a job; returns the last column's logits."""
        if job.cache is None and job.rows and job.kv is not None:   # rows start from their prefix's KV
            job.cache = DynamicCache()
            for layer in range(len(job.kv[job.adapters[0]])):
                kv = [job.kv[a][layer] for a in job.adapters]
                job.cache.update(torch.cat([k for k, _ in kv]), torch.cat([v for _, v in kv]), layer)
        end = job.mask.shape[1] - job.ids.shape[1] + job.done + width
        out = self._run(job.adapters, job.ids[:, job.done: job.done + width], job.mask[:, :end], job.cache)
        job.cache, job.done = out.cache, job.done + width
        return out.logits[:, -1]

    def _finish(self, job: _Prefill, logits: torch.Tensor) -> list[tuple[Row, str]]:
        """A job fed whole: a prefix's KV is kept per adapter; rows sample their first token and join."""
        if not job.rows:
            for i, adapter in enumerate(job.adapters):
                job.kv[adapter] = [(la.keys[i:i + 1], la.values[i:i + 1]) for la in job.cache.layers]
            return []
        if self.cache is None:
            self.cache, self.mask = _roomy(job.cache), job.mask
        else:
            cache, self.mask = _concat(self.cache, self.mask, job.cache, job.mask)
            self.cache = _roomy(cache)
        self.rows += job.rows
        return self._sample(job.rows, logits)

    def _run(self, adapters: list[str], ids: torch.Tensor, mask: torch.Tensor, cache: DynamicCache | None):
        width = ids.shape[1]
        # each row's positions count its own real tokens only (left padding shifts nothing)
        positions = (mask.cumsum(1) - 1).clamp(min=0)[:, -width:]
        with torch.inference_mode():
            return self.forward(adapters, input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                position_ids=positions.to(self.device), cache=cache, use_cache=True,
                                logits_to_keep=_last(ids))

    def _sample(self, rows: list[Row], logits: torch.Tensor) -> list[tuple[Row, str]]:
        tokens = sample_tokens(logits, [r.params for r in rows], [r.generator for r in rows])
        return [(r, r.advance(t)) for r, t in zip(rows, tokens, strict=True)]
