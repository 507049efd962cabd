"""The two model calls every eval task is built from: log-likelihood of a continuation, and generation.

`loglikelihoods` has lm-evaluation-harness's `loglikelihood` semantics (trailing context spaces move
to the continuation; the continuation's tokens are those of tok(context + continuation) after
tok(context); an empty context is conditioned on BOS), and is fast because it computes each shared
context once:

* requests whose model inputs are identical (an item's one-token choices " A".." D") share one row;
* inputs are sorted by tokens, so items with the same few-shot prefix are neighbours; a group's
  longest common prefix is run once (batch 1) and its KV cache is broadcast to every batch of the
  group, which then runs only its own suffix tokens;
* everything else is batched by length (right padding: with a causal mask, pads after the real
  tokens change nothing, so no attention mask is needed), and logits are projected only at the
  positions that are scored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList

Progress = Callable[[int], None]
MIN_SHARED_PREFIX = 16   # tokens; shorter shared prefixes cost more (an extra forward) than they save


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def max_length(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048) or 2048)


def pad_token_id(tokenizer) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its EOS."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def eos_token_ids(tokenizer, model) -> frozenset[int]:
    """Every id that ends a reply: the tokenizer's EOS and the model config's and generation config's
    `eos_token_id` (each an int or a list; chat models often end a turn with a token of their own)."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.config, "eos_token_id", None),
                  getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        ids.update(v for v in (value if isinstance(value, list | tuple) else [value]) if isinstance(v, int))
    return frozenset(ids)


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) exactly as lm-eval's causal HF backend splits them."""
    if not context:
        cont = tokenizer.encode(continuation, add_special_tokens=False)
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return ([prefix], cont) if cont[:1] != [prefix] else (cont[:1], cont[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return ctx, whole[len(ctx):]


@dataclass
class _Row:
    """One model input (tokens[:-1] of context+continuation) and the requests scored on it."""
    tokens: tuple[int, ...]
    requests: list[tuple[int, list[int]]] = field(default_factory=list)   # (request index, continuation)

    @property
    def first_scored(self) -> int:
        """Smallest input position whose logits are needed (predicts the first continuation token)."""
        return len(self.tokens) - max(len(c) for _, c in self.requests)


def _rows(tokenizer, requests: list[tuple[str, str]], max_len: int) -> list[_Row]:
    rows: dict[tuple[int, ...], _Row] = {}
    for i, (context, continuation) in enumerate(requests):
        ctx, cont = encode_pair(tokenizer, context, continuation)
        if not cont:
            raise ValueError(f"request {i}: continuation {continuation!r} encodes to no tokens")
        whole = (ctx + cont)[-(max_len + 1):]   # left-truncate like lm-eval
        key = tuple(whole[:-1])
        rows.setdefault(key, _Row(key)).requests.append((i, cont))
    return list(rows.values())


def _lcp(a: tuple[int, ...], b: tuple[int, ...], limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def shared_prefix_len(seqs: list[list[int]] | list[tuple[int, ...]], limit: int) -> int:
    """Length of the prefix every sequence shares, at most `limit`."""
    first = tuple(seqs[0])
    return functools.reduce(lambda n, s: _lcp(first, tuple(s), n), seqs, min(limit, len(first)))


def _groups(rows: list[_Row]) -> tuple[list[tuple[int, list[_Row]]], list[_Row]]:
    """Split rows into (shared prefix length, rows) groups and a pool of rows with no useful prefix."""
    rows = sorted(rows, key=lambda r: r.tokens)
    groups: list[tuple[int, list[_Row]]] = []
    pool: list[_Row] = []
    cur: list[_Row] = []
    cur_lcp = 0

    def close() -> None:
        if len(cur) > 1 and cur_lcp >= MIN_SHARED_PREFIX:
            groups.append((cur_lcp, list(cur)))
        else:
            pool.extend(cur)

    for row in rows:
        # the prefix must stop before the first scored position, so every row keeps >= 1 own token
        limit = row.first_scored
        if cur:
            lcp = _lcp(cur[0].tokens, row.tokens, min(cur_lcp, limit))
            # join while the shared prefix stays long; a drop below half means a new few-shot block
            if lcp >= MIN_SHARED_PREFIX and lcp * 2 >= cur_lcp:
                cur.append(row)
                cur_lcp = lcp
                continue
            close()
        cur, cur_lcp = [row], limit
    if cur:
        close()
    return groups, pool


def _broadcast(cache: DynamicCache, batch: int) -> DynamicCache:
    """A fresh cache whose layers are batch-`batch` views of a batch-1 prefix cache: no copy until the
    forward appends its own tokens (one concatenation), and the prefix cache stays untouched."""
    out = DynamicCache()
    for i, layer in enumerate(cache.layers):
        out.update(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1), i)
    return out


def _score_batch(model, rows: list[_Row], start: int, cache: DynamicCache | None,
                 out: list[tuple[float, bool] | None], pad_id: int) -> None:
    """Forward rows[i].tokens[start:] (right-padded) on top of `cache`; fill `out` for their requests."""
    device = model_device(model)
    suffixes = [r.tokens[start:] for r in rows]
    width = max(len(s) for s in suffixes)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for b, s in enumerate(suffixes):
        ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
    # positions (within the suffix) whose logits any row needs; project only those through the LM head
    needed = sorted({p - start for r in rows for p in range(r.first_scored, len(r.tokens))})
    keep = torch.tensor(needed, dtype=torch.long, device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), cache=cache, use_cache=cache is not None,
                       logits_to_keep=keep).logits
    logprobs = F.log_softmax(logits.float(), dim=-1)
    column = {p: j for j, p in enumerate(needed)}
    for b, row in enumerate(rows):
        for idx, cont in row.requests:
            # continuation token t sits at input position len(tokens) - len(cont) + t + 1, predicted one earlier
            pos = [column[len(row.tokens) - len(cont) + t - start] for t in range(len(cont))]
            lp = logprobs[b, pos]
            target = torch.tensor(cont, device=lp.device)
            total = lp.gather(-1, target[:, None]).sum().item()
            greedy = bool((lp.argmax(-1) == target).all())
            out[idx] = (total, greedy)


def _batches(rows: list[_Row], batch_size: int) -> Iterable[list[_Row]]:
    rows = sorted(rows, key=lambda r: -len(r.tokens))   # length batching: little padding per batch
    for i in range(0, len(rows), batch_size):
        yield rows[i: i + batch_size]


def loglikelihoods(model, tokenizer, requests: list[tuple[str, str]], batch_size: int = 16,
                   progress: Progress | None = None) -> list[tuple[float, bool]]:
    """For each (context, continuation): (sum_t log p(cont_t | context, cont_<t), cont is the greedy decode).

    `progress(n)` is called with the number of requests finished after each batch."""
    if not requests:
        return []
    pad_id = pad_token_id(tokenizer)
    out: list[tuple[float, bool] | None] = [None] * len(requests)
    groups, pool = _groups(_rows(tokenizer, requests, max_length(model)))
    device = model_device(model)
    for plen, rows in groups:
        prefix = torch.tensor([rows[0].tokens[:plen]], dtype=torch.long, device=device)
        with torch.inference_mode():
            prefix_cache = model(input_ids=prefix, use_cache=True, logits_to_keep=1).cache
        for batch in _batches(rows, batch_size):
            _score_batch(model, batch, plen, _broadcast(prefix_cache, len(batch)), out, pad_id)
            if progress:
                progress(sum(len(r.requests) for r in batch))
    for batch in _batches(pool, batch_size):
        _score_batch(model, batch, 0, None, out, pad_id)
        if progress:
            progress(sum(len(r.requests) for r in batch))
    return out  # type: ignore[return-value]


def truncate_at_stop(text: str, stop: list[str] | None) -> str:
    """Cut `text` at the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop or []:
        i = text.find(s)
        if 0 <= i < cut:
            cut = i
    return text[:cut]


class _StopOnStrings(StoppingCriteria):
    """Per-row stop once the generated text contains a stop string. (transformers' own `stop_strings`
    fires early when a stop string merely overlaps a token boundary, which would cut answers short.)"""

    def __init__(self, tokenizer, stop: list[str], start: int):
        self.tokenizer, self.stop, self.start = tokenizer, stop, start
        self.tail = max(len(s) for s in stop) + 2   # a token is >= 1 character: enough tokens to hold a stop

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        tails = input_ids[:, max(self.start, input_ids.shape[1] - self.tail):]
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], device=input_ids.device)


def _prefix_cache(model, tokens: tuple[int, ...], cached: dict) -> DynamicCache:
    """KV cache of a shared prompt prefix, computed once and kept for the following batches."""
    if cached.get("tokens") != tokens:
        ids = torch.tensor([tokens], dtype=torch.long, device=model_device(model))
        with torch.inference_mode():
            cached.update(tokens=tokens, cache=model(input_ids=ids, use_cache=True, logits_to_keep=1).cache)
    return cached["cache"]


def left_padded(seqs: list[list[int]], plen: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows as [shared prefix | left padding | own suffix] with the attention mask that hides the padding."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, :plen], mask[b, :plen] = torch.tensor(s[:plen], dtype=torch.long), 1
        own = s[plen:]
        ids[b, width - len(own):], mask[b, width - len(own):] = torch.tensor(own, dtype=torch.long), 1
    return ids, mask


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 256, stop: list[str] | None = None,
             batch_size: int = 8, temperature: float = 0.0, progress: Progress | None = None) -> list[str]:
    """Complete each prompt: greedy (temperature 0) or sampled; stops at EOS or any stop string, which is
    cut from the output. Prompts sharing a few-shot prefix are batched together (longest first) and the
    prefix's KV cache is computed once and reused; the rest of each prompt is left-padded after it."""
    device = model_device(model)
    out: list[str | None] = [None] * len(prompts)
    max_len = max_length(model)
    encoded = [tokenizer.encode(p)[-(max_len - max_new_tokens):] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (encoded[i][:64], -len(encoded[i])))
    pad_id = pad_token_id(tokenizer)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    cached: dict = {}
    for i in range(0, len(order), batch_size):
        idx = order[i: i + batch_size]
        seqs = [encoded[j] for j in idx]
        # shared prefix, leaving every row >= 1 own token for generate to feed
        plen = shared_prefix_len(seqs, min(len(s) for s in seqs) - 1)
        plen = plen if plen >= MIN_SHARED_PREFIX else 0
        ids, mask = left_padded(seqs, plen, pad_id)
        extra = {}
        if plen:
            extra["cache"] = _broadcast(_prefix_cache(model, tuple(seqs[0][:plen]), cached), len(seqs))
        with torch.inference_mode():
            gen = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id, top_p=None, top_k=None,
                stopping_criteria=StoppingCriteriaList([_StopOnStrings(tokenizer, stop, ids.shape[1])] if stop else []),
                **sampling, **extra)
        for b, j in enumerate(idx):
            text = tokenizer.decode(gen[b, ids.shape[1]:], skip_special_tokens=True)
            out[j] = truncate_at_stop(text, stop)
        if progress:
            progress(len(idx))
    return out  # type: ignore[return-value]


def sample_ids(model, prompts: list[list[int]], max_new_tokens: int, temperature: float, eos_id: int, pad_id: int,
               batch_size: int = 16) -> list[list[int]]:
    """Sampled continuations (plain temperature sampling, no top-k/top-p) of token-id prompts, as token ids
    cut after the first EOS, which is kept: RL rollouts score exactly the sampled tokens, stop included."""
    if temperature <= 0:
        raise ValueError(f"sampling needs temperature > 0, got {temperature}")
    out: list[list[int]] = []
    for i in range(0, len(prompts), batch_size):
        ids, mask = left_padded(prompts[i: i + batch_size], 0, pad_id)
        with torch.inference_mode():
            gen = model.generate(input_ids=ids.to(model_device(model)), attention_mask=mask.to(model_device(model)),
                                 max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_p=None,
                                 top_k=None, pad_token_id=pad_id, eos_token_id=eos_id)
        for row in gen[:, ids.shape[1]:].tolist():
            out.append(row[: row.index(eos_id) + 1] if eos_id in row else row)
    return out
