"""`adaptlab serve` over real loopback HTTP (uvicorn on 127.0.0.1, a free port), driven by the openai client."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import openai
import pytest
import torch

from adaptlab.methods import MethodConfig, get_method
from adaptlab.methods.multi import BASE
from adaptlab.models import tiny_llama
from adaptlab.models.generation import generate
from adaptlab.serve.backend import Backend, load_backend
from adaptlab.serve.server import api_key_for, build_server

CHAT = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_dir):
    """A tiny base and two LoRA adapters that change its outputs."""
    root = tmp_path_factory.mktemp("adapters")
    for name, seed in [("math", 1), ("poet", 2)]:
        model = get_method("lora").apply(tiny_llama()[0].float(), MethodConfig(r=4))
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.3 * torch.randn_like(p))
        model.save_pretrained(root / name)
    return {"model": str(tiny_dir), "adapters": {"math": str(root / "math"), "poet": str(root / "poet")}}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlowBackend(Backend):
    """Each forward takes >= `delay` seconds and never ends on EOS, so requests stay in flight to be observed."""

    delay = 0.05

    def forward_for(self, lane):
        inner = super().forward_for(lane)

        def slow(names, **inputs):
            time.sleep(self.delay)
            out = inner(names, **inputs)
            out.logits[..., self.tokenizer.eos_token_id] = -float("inf")
            return out
        return slow


@contextmanager
def running(served, host="127.0.0.1", api_key=None, slow=False, **kw):
    backend = load_backend(served["model"], served["adapters"], dtype="fp32", name="tiny")
    if slow:
        backend = SlowBackend(backend.name, backend.model, backend.tokenizer, backend.adapters)
    port = _port()
    server = build_server(backend, host, port, api_key, **kw)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", backend
    finally:
        server.should_exit = True
        thread.join(30)


def _reference(backend, adapter, messages, n=12):
    prompt = backend.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    with backend.adapters.active(adapter) as model:
        return generate(model, backend.tokenizer, [prompt], max_new_tokens=n)[0]


def test_openai_client_two_adapters_streaming_and_not(served):
    with running(served) as (url, backend):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
        assert {m.id for m in client.models.list()} == {"tiny", "tiny:math", "tiny:poet"}
        answers = {}
        for model, adapter in [("tiny:math", "math"), ("tiny:poet", "poet"), ("tiny", BASE)]:
            whole = client.chat.completions.create(model=model, messages=CHAT, max_tokens=12, temperature=0)
            chunks = list(client.chat.completions.create(model=model, messages=CHAT, max_tokens=12, temperature=0,
                                                         stream=True))
            streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
            text = whole.choices[0].message.content
            assert text == streamed == _reference(backend, adapter, CHAT), model
            assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
            assert whole.usage.completion_tokens <= 12
            answers[model] = text
        assert len(set(answers.values())) == 3   # each adapter really changes the answer
        done = client.completions.create(model="tiny:math", prompt="1, 2, 3,", max_tokens=6, temperature=0.8,
                                         seed=7, n=2)
        assert [c.index for c in done.choices] == [0, 1] and done.usage.completion_tokens > 0


def test_bad_requests_get_4xx_between_good_ones(served):
    good = {"model": "tiny:poet", "messages": CHAT, "max_tokens": 8, "temperature": 0}
    bad = [
        (b"{not json", 400), (json.dumps({**good, "model": "other"}), 404),
        (json.dumps({**good, "model": "tiny:nope"}), 404), (json.dumps({**good, "max_tokens": -5}), 400),
        (json.dumps({**good, "stop": ["x"] * 10_000}), 400), (json.dumps({**good, "max_tokens": 10_000}), 400),
        (json.dumps({**good, "messages": [{"role": "user", "content": "word " * 3000}]}), 400),
        (json.dumps({**good, "messages": []}), 400), (json.dumps({**good, "temperature": "hot"}), 400),
    ]
    with running(served) as (url, _), httpx.Client(base_url=url, timeout=60) as http:
        expected = http.post("/v1/chat/completions", json=good).json()["choices"][0]["message"]["content"]
        for body, status in bad:
            r = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, (body[:80], r.text)
            assert r.json()["error"]["message"]
            again = http.post("/v1/chat/completions", json=good)
            assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == expected
        metrics = http.get("/metrics").text
    assert 'status="400"' in metrics and "adaptlab_time_to_first_token_seconds_bucket" in metrics


def test_api_key_required_off_loopback_and_checked(served):
    with pytest.raises(ValueError, match="--api-key"):
        api_key_for("0.0.0.0", None)
    with running(served, host="0.0.0.0", api_key="s3cret") as (url, _):
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
        missing = httpx.get(url + "/v1/models")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        client = openai.OpenAI(base_url=url + "/v1", api_key="s3cret")
        assert client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=3).choices
        assert httpx.get(url + "/health").status_code == 200


def _open_stream(http, max_tokens=400, model="tiny:math"):
    body = {"model": model, "messages": CHAT, "max_tokens": max_tokens, "stream": True}
    return http.stream("POST", "/v1/chat/completions", json=body)


def test_full_queue_is_429_and_a_disconnect_frees_the_slot(served):
    with running(served, slow=True, max_batch=1, max_queue=1) as (url, _), httpx.Client(base_url=url, timeout=60) as http:
        with _open_stream(http) as first:
            lines = first.iter_lines()                        # (a dropped iterator closes the connection)
            next(lines)                                       # admitted and decoding
            with _open_stream(http):                          # waits in the queue
                time.sleep(0.3)
                third = http.post("/v1/chat/completions", json={"model": "tiny", "messages": CHAT, "max_tokens": 2})
                assert third.status_code == 429 and third.headers["retry-after"] == "1"
                assert third.json()["error"]["type"] == "rate_limit_error"
                assert http.get("/health").json() == {"status": "ok", "active": 1, "waiting": 1}
        deadline = time.monotonic() + 10                      # both clients went away mid-stream
        while http.get("/health").json()["active"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http.get("/health").json() == {"status": "ok", "active": 0, "waiting": 0}
        ok = http.post("/v1/chat/completions", json={"model": "tiny", "messages": CHAT, "max_tokens": 2})
        assert ok.status_code == 200


DRAIN_SCRIPT = """
import sys, time
from adaptlab.serve.backend import load_backend
from adaptlab.serve.server import build_server
b = load_backend(sys.argv[1], {}, dtype="fp32", name="tiny")
forward = b.forward_for("__mixed__")
def slow(names, **inputs):  # ~0.05 s a step and no EOS: 30 tokens stay in flight for > 1.5 s
    time.sleep(0.05)
    out = forward(names, **inputs)
    out.logits[..., b.tokenizer.eos_token_id] = -float("inf")
    return out
b.forward_for = lambda lane: slow
build_server(b, port=int(sys.argv[2])).run()
"""


def test_sigterm_drains_in_flight_requests(served):
    port = _port()
    proc = subprocess.Popen([sys.executable, "-c", DRAIN_SCRIPT, served["model"], str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180   # a cold start on a busy machine
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/health")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=60) as http, _open_stream(http, max_tokens=30, model="tiny") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")
            proc.send_signal(signal.SIGTERM)                 # ~1.5 s of decoding still to go
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        assert json.loads(rest[-2].removeprefix("data: "))["choices"][0]["finish_reason"] in {"length", "stop"}
        assert proc.wait(30) in (0, -signal.SIGTERM)   # uvicorn re-raises the signal once drained
    finally:
        proc.kill()
