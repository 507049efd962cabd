"""Load test of `adaptlab serve` on loopback vs transformers `generate` one request at a time, same run.

The server (uvicorn in a thread, the builtin model, two LoRA adapters with random non-zero updates) gets
N concurrent streaming clients, first all on the bare base, then on a mix (base, adapter a, adapter b in
turn). Each client sends its share of the requests back to back. Generated tokens are counted by the
engine; time to first token (TTFT) and request latency by the clients. The baseline is what a user of
transformers writes without a server: `model.generate` on each request in turn (greedy, same prompts,
same max_tokens, the CPU's native dtype). The prompts share their first 29 of ~39 tokens (the chat template's
system prompt and "Write a long story about"), which the server prefills once per adapter and reuses, as a
server with a fixed system prompt does; the baseline prefills every prompt whole. The baseline runs with torch's
default thread count (`torch_threads`), the server's engine thread with one fewer (`engine_threads`), leaving a
core to the event loop and to the clients, which share this process. Prints one JSON line last:
{"clients", "requests", "errors", "tok_s", "baseline_tok_s", "ratio", "p95_ttft_ms", "p95_latency_ms",
 "peak_mb", "base_tok_s", "mixed_vs_base", ...}; tok_s, TTFT and latency are the mixed-adapter run's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import socket
import statistics
import tempfile
import threading
import time

import httpx
import torch
from peft import LoraConfig, get_peft_model

from adaptlab.models import load_model
from adaptlab.serve.backend import load_backend
from adaptlab.serve.server import build_server

TOPICS = ["a lighthouse keeper", "a lost umbrella", "the first snow", "a robot gardener", "an old map",
          "a city at night", "a talking cat", "the last train"]


def _prompt(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Write a long story about {TOPICS[i % len(TOPICS)]}."}]


def _adapters(model_name: str, root: str) -> dict[str, str]:
    """Two LoRA adapters (r=8, every linear) with random updates, saved in peft format."""
    out = {}
    for name, seed in [("a", 1), ("b", 2)]:
        base = load_model(model_name, dtype="fp32").model
        peft = get_peft_model(base, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
        torch.manual_seed(seed)
        with torch.no_grad():
            for n, p in peft.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.002)
        peft.save_pretrained(f"{root}/{name}")
        out[name] = f"{root}/{name}"
    return out


def baseline(model, tok, n: int, max_tokens: int) -> tuple[float, int]:
    """tokens/s of model.generate, one request at a time."""
    tokens, start = 0, time.perf_counter()
    for i in range(n):
        ids = tok.apply_chat_template(_prompt(i), add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
        tokens += out.shape[1] - ids["input_ids"].shape[1]
    return tokens / (time.perf_counter() - start), tokens


async def _client(http: httpx.AsyncClient, models: list[str], offset: int, count: int, max_tokens: int,
                  stats: dict) -> None:
    for k in range(count):
        i = offset + k
        body = {"model": models[i % len(models)], "messages": _prompt(i), "max_tokens": max_tokens,
                "temperature": 0, "stream": True}
        start, first = time.perf_counter(), None
        try:
            async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"status {r.status_code}")
                async for line in r.aiter_lines():
                    if first is None and line.startswith("data: {"):
                        first = time.perf_counter()
        except (httpx.HTTPError, RuntimeError):  # counted, not fatal: the error count is part of the result
            stats["errors"] += 1
            continue
        stats["ttft"].append((first or time.perf_counter()) - start)
        stats["latency"].append(time.perf_counter() - start)


def load_run(url: str, engine, models: list[str], clients: int, per_client: int, max_tokens: int) -> dict:
    """N concurrent clients, `per_client` requests each; generated tokens/s and TTFT/latency percentiles."""
    stats = {"errors": 0, "ttft": [], "latency": []}

    async def run() -> None:
        limits = httpx.Limits(max_connections=clients + 4)
        async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
            await asyncio.gather(*[_client(http, models, c * per_client, per_client, max_tokens, stats)
                                   for c in range(clients)])

    before, start = engine.tokens_generated, time.perf_counter()
    asyncio.run(run())
    wall = time.perf_counter() - start
    pct = lambda xs, q: 1000 * statistics.quantiles(xs, n=100)[q - 1] if len(xs) > 1 else 1000 * (xs or [0])[0]
    return {"requests": clients * per_client, "errors": stats["errors"],
            "tok_s": (engine.tokens_generated - before) / wall, "wall_s": wall,
            "p50_ttft_ms": pct(stats["ttft"], 50), "p95_ttft_ms": pct(stats["ttft"], 95),
            "p50_latency_ms": pct(stats["latency"], 50), "p95_latency_ms": pct(stats["latency"], 95)}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--per-client", type=int, default=3, help="requests each client sends, back to back")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--baseline-requests", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="16 clients x 1 request of 24 tokens, 3 baseline requests")
    args = ap.parse_args()
    if args.quick:
        args.per_client, args.max_tokens, args.baseline_requests = 1, 24, 3
    logging.basicConfig(level=logging.WARNING)

    plain = load_model(args.model)   # the baseline: a plain transformers model in the CPU's native dtype
    baseline(plain.model, plain.tokenizer, 1, 4)   # warm-up
    baseline_tok_s, _ = baseline(plain.model, plain.tokenizer, args.baseline_requests, args.max_tokens)
    dtype = str(plain.model.dtype).removeprefix("torch.")
    del plain
    with tempfile.TemporaryDirectory() as root:
        backend = load_backend(args.model, _adapters(args.model, root), name="m")
        server = build_server(backend, port=_port(), max_batch=args.clients, max_queue=4 * args.clients)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url, engine = f"http://127.0.0.1:{server.config.port}", server.config.app.state.engine
        load_run(url, engine, ["m"], 2, 1, 4)   # warm-up
        base = load_run(url, engine, ["m"], args.clients, args.per_client, args.max_tokens)
        mixed = load_run(url, engine, ["m", "m:a", "m:b"], args.clients, args.per_client, args.max_tokens)
        server.should_exit = True
        thread.join(60)
    result = {"clients": args.clients, "requests": base["requests"] + mixed["requests"],
              "errors": base["errors"] + mixed["errors"], "tok_s": round(mixed["tok_s"], 1),
              "baseline_tok_s": round(baseline_tok_s, 1), "ratio": round(mixed["tok_s"] / baseline_tok_s, 2),
              "p95_ttft_ms": round(mixed["p95_ttft_ms"]), "p95_latency_ms": round(mixed["p95_latency_ms"]),
              "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "base_tok_s": round(base["tok_s"], 1), "mixed_vs_base": round(mixed["tok_s"] / base["tok_s"], 2),
              "base_p95_ttft_ms": round(base["p95_ttft_ms"]), "p50_ttft_ms": round(mixed["p50_ttft_ms"]),
              "p50_latency_ms": round(mixed["p50_latency_ms"]),
              "max_tokens": args.max_tokens, "dtype": dtype,
              "torch_threads": torch.get_num_threads(), "engine_threads": engine.threads}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
