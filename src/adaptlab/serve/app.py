"""The OpenAI-compatible HTTP API over an `Engine`: /v1/chat/completions, /v1/completions, /v1/models,
/health and /metrics. Errors are OpenAI-style JSON with a 4xx status; a full queue is 429 + Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from adaptlab.data.templates import chat_prompt_ids
from adaptlab.serve.backend import UnknownModel
from adaptlab.serve.engine import Draining, Engine, Event, QueueFull
from adaptlab.serve.metrics import Metrics
from adaptlab.serve.schemas import ChatRequest, CompletionRequest, Sampling
from adaptlab.serve.shapes import CHAT, COMPLETION, Shape, error_body, usage

DISCONNECT_POLL_S = 0.5


@dataclass(frozen=True)
class Limits:
    max_prompt_tokens: int = 1536
    max_tokens: int = 512
    default_max_tokens: int = 128
    retry_after_s: int = 1


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.body, self.headers = status, error_body(message, type_, code, param), headers


def create_app(engine: Engine, limits: Limits = Limits(), api_key: str | None = None) -> FastAPI:
    """The FastAPI app; the engine's thread starts with the app and drains when it shuts down."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        engine.start()
        yield
        await asyncio.to_thread(engine.stop)

    app = FastAPI(title="adaptlab serve", lifespan=lifespan)
    app.state.engine = engine
    _errors(app, metrics)
    if api_key:
        _auth(app, api_key)
    backend = engine.backend

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "active": engine.active, "waiting": engine.queue_depth}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        text = metrics.render({"active_rows": engine.active, "queue_depth": engine.queue_depth},
                              {"generated_tokens_total": engine.tokens_generated})
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "adaptlab"}
                                           for m in backend.model_names]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        prompt = chat_prompt_ids([m.as_template() for m in body.messages], backend.tokenizer)
        return await _complete(engine, limits, metrics, CHAT, body, prompt, request)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await _complete(engine, limits, metrics, COMPLETION, body, backend.tokenizer.encode(body.prompt), request)

    return app


def _errors(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError) -> JSONResponse:
        metrics.request(request.url.path, e.status)
        return JSONResponse(e.body, status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        metrics.request(request.url.path, 400)
        return JSONResponse(error_body(f"{param or 'body'}: {first.get('msg')}", "invalid_request_error", None, param),
                            status_code=400)


def _auth(app: FastAPI, api_key: str) -> None:
    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if request.url.path != "/health":
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(given.encode(), api_key.encode()):
                return JSONResponse(error_body("Incorrect or missing API key (send Authorization: Bearer KEY)",
                                               "invalid_request_error", "invalid_api_key"), status_code=401)
        return await call_next(request)


async def _complete(engine: Engine, limits: Limits, metrics: Metrics, shape: Shape, body: Sampling,
                    prompt: list[int], request: Request):
    try:
        adapter = engine.backend.resolve(body.model)
    except UnknownModel as e:
        raise APIError(404, str(e), code="model_not_found", param="model") from None
    params = body.sampling(limits.default_max_tokens)
    if params.max_tokens > limits.max_tokens:
        raise APIError(400, f"max_tokens is {params.max_tokens}; this server allows at most {limits.max_tokens}",
                       param="max_tokens")
    if len(prompt) > limits.max_prompt_tokens:
        raise APIError(400, f"the prompt has {len(prompt)} tokens; this server allows at most "
                       f"{limits.max_prompt_tokens}", code="context_length_exceeded", param="messages")
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    try:
        job = engine.submit(prompt, params, adapter, body.n, lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev))
    except QueueFull as e:
        raise APIError(429, f"the server is busy ({e}); retry later", "rate_limit_error", "queue_full",
                       headers={"Retry-After": str(limits.retry_after_s)}) from None
    except Draining as e:
        raise APIError(503, str(e), "server_error", "shutting_down") from None
    metrics.request(request.url.path, 200, len(prompt))
    stream = _Stream(engine, metrics, job, events, body.n)
    if body.stream:
        return StreamingResponse(_sse(stream, shape, body.model), media_type="text/event-stream")
    texts, reasons = ["" for _ in range(body.n)], [None] * body.n
    async for ev in stream.events(request):
        texts[ev.index] += ev.text
        reasons[ev.index] = ev.finish_reason or reasons[ev.index]
    stream.raise_failure()
    result = shape.envelope(shape.new_id(), body.model, [shape.choice(i, texts[i], reasons[i]) for i in range(body.n)],
                            chunk=False)
    return {**result, "usage": usage(len(prompt), job.completion_tokens)}


class _Stream:
    """The events of one request until all its choices finish; cancels the request if abandoned."""

    def __init__(self, engine: Engine, metrics: Metrics, job, queue: asyncio.Queue, n: int):
        self.engine, self.metrics, self.job, self.queue, self.left = engine, metrics, job, queue, n
        self.error: str | None = None

    async def events(self, request: Request | None = None) -> AsyncIterator[Event]:
        first = True
        try:
            while self.left:
                try:
                    ev = await asyncio.wait_for(self.queue.get(), DISCONNECT_POLL_S)
                except TimeoutError:
                    if request is not None and await request.is_disconnected():
                        return
                    continue
                if first:
                    self.metrics.observe("time_to_first_token", time.monotonic() - self.job.submitted)
                    first = False
                self.left -= ev.finish_reason is not None
                self.error = ev.error or self.error
                yield ev
            self.metrics.observe("request_latency", time.monotonic() - self.job.submitted)
        finally:
            if self.left:
                self.engine.cancel(self.job)

    def raise_failure(self) -> None:
        if self.error:
            raise APIError(500, self.error, "server_error")


async def _sse(stream: _Stream, shape: Shape, model: str) -> AsyncIterator[str]:
    rid, started = shape.new_id(), set()
    async for ev in stream.events():
        if ev.error:
            yield f"data: {json.dumps(error_body(ev.error, 'server_error'))}\n\n"
            break
        chunk = shape.envelope(rid, model, [shape.delta(ev.index, ev.text, ev.finish_reason, ev.index not in started)],
                               chunk=True)
        started.add(ev.index)
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"
