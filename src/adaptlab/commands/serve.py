"""`adaptlab serve`: an OpenAI-compatible HTTP server with adapters chosen per request."""

from __future__ import annotations

import typer
from rich.console import Console

from adaptlab.commands.errors import user_errors

console = Console(stderr=True)


def parse_adapters(specs: list[str]) -> dict[str, str]:
    """`name=PATH` options -> {name: path}; a bad spec is an error naming it."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"{spec!r}: write --adapter NAME=PATH", param_hint="--adapter")
        out[name] = path
    return out


def serve(model: str = typer.Option(..., "--model", "-m", help="base model: builtin name, local dir, hub id, .gguf, "
                                    "or a merged / QA-LoRA low-bit export"),
          adapter: list[str] = typer.Option([], "--adapter", "-a", help="NAME=PATH of a peft adapter (LoRA, DoRA, "
                                            "IA3); repeat for several; request it as model 'BASE:NAME'"),
          name: str = typer.Option(None, help="the model id clients send (default: the model's name)"),
          host: str = typer.Option("127.0.0.1", help="address to bind; anything but loopback needs an API key"),
          port: int = typer.Option(8000),
          api_key: str = typer.Option(None, "--api-key", envvar="ADAPTLAB_API_KEY",
                                      help="key clients send as 'Authorization: Bearer KEY'"),
          max_batch: int = typer.Option(16, help="rows decoded together (continuous batching)"),
          max_queue: int = typer.Option(64, help="requests waiting beyond the batch before 429"),
          max_prompt_tokens: int = typer.Option(1536), max_tokens: int = typer.Option(512, help="largest max_tokens"),
          dtype: str = typer.Option("auto"), device: str = typer.Option("auto")) -> None:
    """Serve /v1/chat/completions, /v1/completions, /v1/models, /health and /metrics (SIGTERM drains)."""
    from adaptlab.serve.app import Limits
    from adaptlab.serve.backend import load_backend
    from adaptlab.serve.server import build_server

    with user_errors():
        backend = load_backend(model, parse_adapters(adapter), dtype=dtype, device=device, name=name)
        server = build_server(backend, host, port, api_key, Limits(max_prompt_tokens, max_tokens),
                              max_batch, max_queue)
    console.print(f"serving {', '.join(backend.model_names)} on http://{host}:{port}/v1")
    server.run()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
