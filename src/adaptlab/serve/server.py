"""Start the HTTP server: loopback by default; any other address needs an API key."""

from __future__ import annotations

import os

import uvicorn

from adaptlab.netbind import is_loopback
from adaptlab.serve.app import Limits, create_app
from adaptlab.serve.backend import Backend
from adaptlab.serve.engine import PREFILL_CHUNK, Engine

API_KEY_ENV = "ADAPTLAB_API_KEY"


def api_key_for(host: str, api_key: str | None) -> str | None:
    """The key requests must carry (`--api-key`, else $ADAPTLAB_API_KEY); required off loopback."""
    key = api_key or os.environ.get(API_KEY_ENV) or None
    if key is None and not is_loopback(host):
        raise ValueError(f"binding {host} exposes the server beyond this machine: set --api-key or ${API_KEY_ENV}")
    return key


def build_server(backend: Backend, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                 limits: Limits | None = None, max_batch: int = 16, max_queue: int = 64,
                 prefill_chunk: int = PREFILL_CHUNK) -> uvicorn.Server:
    """A uvicorn server for `backend`; `server.run()` blocks, and SIGTERM drains in-flight requests first."""
    key = api_key_for(host, api_key)
    app = create_app(Engine(backend, max_batch=max_batch, max_queue=max_queue, prefill_chunk=prefill_chunk),
                     limits or Limits(), key)
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
