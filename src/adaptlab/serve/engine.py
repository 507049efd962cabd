"""Continuous batching: one thread decodes every active row, step by step; requests join between steps.

Each loop iteration drops rows whose client went away, admits waiting requests while the batch has room
(their prompts queue for prefill together, one batch per lane), feeds each lane's queued prompts up to
`prefill_chunk` tokens (rows whose prompt is complete get their first token and join), then decodes one
token for every row of every lane. A request that arrives while others decode therefore starts at the next
step instead of waiting for the batch to finish (Yu et al. 2022, "Orca: A Distributed Serving System for
Transformer-Based Generative Models", OSDI: iteration-level scheduling), and a long prompt holds the running
rows' next token back by one chunk, not by its whole prefill. Results go back through each request's
`emit` callback, called on the engine thread.

The engine thread runs torch with one intra-op thread fewer than the machine's default, so the event loop
(HTTP, SSE, tokenizing prompts) keeps a core: with every core in torch's pool, the event loop's bursts of work
take a core from a pool thread mid-operation and the step waits for it. On 2 cores a 16-row step took ~125 ms
in the server against 82 ms of one thread's CPU, and under load 1 engine thread gave 1.1-1.7x the tokens/s
of 2 in alternating runs of `benchmarks/serve.py`'s mixed load, with less CPU in all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from adaptlab.models.decode import Lane, Row, SamplingParams
from adaptlab.models.generation import eos_token_ids, max_length, model_device, pad_token_id
from adaptlab.serve.backend import Backend

log = logging.getLogger(__name__)
# prompt tokens a lane prefills per iteration, so a long prompt joining delays the other rows' next token by
# about five decode steps at most (builtin model, one CPU thread: 0.30 s per 256-token chunk, 58 ms per step
# of 16 rows); a burst of 16 chat requests sharing a system prompt still joins in one iteration
PREFILL_CHUNK = 256


@dataclass
class Event:
    """A piece of one choice's text; `finish_reason` is set on the choice's last event."""

    index: int
    text: str
    finish_reason: str | None = None
    error: str | None = None


class QueueFull(RuntimeError):
    """The server holds as many requests as its limits allow; retry later."""


class Draining(RuntimeError):
    """The server is shutting down and accepts no new requests."""


@dataclass
class Request:
    rows: list[Row]
    emit: Callable[[Event], None]
    cancelled: bool = False
    submitted: float = field(default_factory=time.monotonic)

    @property
    def completion_tokens(self) -> int:
        return sum(len(r.generated) for r in self.rows)


class Engine:
    """Owns the decoding thread; `submit` may be called from any thread."""

    def __init__(self, backend: Backend, max_batch: int = 16, max_queue: int = 64, prefill_chunk: int = PREFILL_CHUNK,
                 threads: int | None = None):
        self.backend, self.max_batch, self.max_queue = backend, max_batch, max_queue
        self.prefill_chunk = prefill_chunk
        self.threads = threads or max(1, torch.get_num_threads() - 1)   # torch's intra-op threads for the engine
        self.waiting: deque[Request] = deque()
        self.lanes: dict[str, Lane] = {}
        self.owner: dict[int, tuple[Request, int]] = {}   # row id -> (request, choice index)
        self.tokens_generated = 0
        self._wake = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self._eos = eos_token_ids(backend.tokenizer, backend.model)
        self._max_len = max_length(backend.model)

    @property
    def active(self) -> int:
        return len(self.owner)

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    def submit(self, prompt: list[int], params: SamplingParams, adapter: str, n: int,
               emit: Callable[[Event], None]) -> Request:
        """Queue a request of `n` choices; raises QueueFull or Draining instead of waiting."""
        rows = [Row(prompt, _seeded(params, i), adapter, self.backend.tokenizer, self._eos, self._max_len)
                for i in range(n)]
        request = Request(rows, emit)
        with self._wake:
            if not self._running:
                raise Draining("the server is shutting down")
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests are waiting (limit {self.max_queue})")
            self.waiting.append(request)
            self._wake.notify()
        return request

    def cancel(self, request: Request) -> None:
        """Free a request's rows at the next step (its client went away)."""
        request.cancelled = True

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="adaptlab-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish every admitted and waiting request, then stop the thread."""
        with self._wake:
            self._running = False
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        torch.set_num_threads(self.threads)   # this thread's own setting: the caller's threads keep theirs
        while True:
            with self._wake:
                while self._running and not self.waiting and not self.owner:
                    self._wake.wait()
                if not self._running and not self.waiting and not self.owner:
                    return
            try:
                self._iteration()
            except Exception as e:  # a failed forward fails its requests, never the server
                log.exception("decoding step failed")
                self._fail_all(f"generation failed: {e}")

    def _iteration(self) -> None:
        self._drop_cancelled()
        for key, rows in self._admit().items():
            if key not in self.lanes:   # one lane per adapter group, built once (not on every step)
                self.lanes[key] = Lane(self.backend.forward_for(key), pad_token_id(self.backend.tokenizer),
                                       model_device(self.backend.model))
            self.lanes[key].queue(rows)
        for lane in list(self.lanes.values()):
            if lane.pending:
                self._deliver(lane, lane.prefill(self.prefill_chunk)[0])
        for lane in list(self.lanes.values()):
            self._deliver(lane, lane.step())

    def _admit(self) -> dict[str, list[Row]]:
        """Move waiting requests into the batch while it has room; rows grouped by lane."""
        joining: dict[str, list[Row]] = {}
        with self._wake:
            while self.waiting and (not self.owner or self.active + len(self.waiting[0].rows) <= self.max_batch):
                request = self.waiting.popleft()
                if request.cancelled:
                    continue
                for i, row in enumerate(request.rows):
                    self.owner[row.id] = (request, i)
                    joining.setdefault(self.backend.lane_of(row.adapter), []).append(row)
        return joining

    def _deliver(self, lane: Lane, results: list[tuple[Row, str]]) -> None:
        """Send each row's new text to its request; drop finished rows from the lane."""
        done = set()
        for row, text in results:
            request, index = self.owner[row.id]
            if text or row.finish_reason:
                request.emit(Event(index, text, row.finish_reason))
            if row.finish_reason:
                done.add(row.id)
        self._release(lane, done)

    def _drop_cancelled(self) -> None:
        for lane in list(self.lanes.values()):
            self._release(lane, {r.id for r in lane.members if self.owner[r.id][0].cancelled})

    def _release(self, lane: Lane, ids: set[int]) -> None:
        if not ids:
            return
        self.tokens_generated += sum(len(r.generated) for r in lane.members if r.id in ids)
        lane.remove(ids)
        for i in ids:
            self.owner.pop(i, None)

    def _fail_all(self, message: str) -> None:
        for request, index in list(self.owner.values()):
            request.emit(Event(index, "", "error", error=message))
        self.owner.clear()
        self.lanes.clear()



def _seeded(params: SamplingParams, i: int) -> SamplingParams:
    """Choice i of a request with a seed samples with seed + i (so n > 1 choices differ)."""
    if params.seed is None or i == 0:
        return params
    return SamplingParams(params.max_tokens, params.temperature, params.top_p, params.stop, params.seed + i)
