"""The feedback web app (FastAPI): an annotator votes on pairs the background worker generated ahead.

Safety: the server binds 127.0.0.1 unless an API key is given; with a key every page but /login and
/healthz needs it (HttpOnly, SameSite=Strict cookie, or `Authorization: Bearer KEY`). On loopback the
Host header must name the loopback (no DNS rebinding). Votes are JSON POSTs carrying a CSRF token (an
HMAC of the annotator id under the database's own secret), and a cross-origin `Origin` is refused, so
another site cannot vote through the annotator's browser. Malformed or forged requests get 4xx.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from adaptlab.feedback.page import entry_page, login_page, vote_page
from adaptlab.feedback.pairs import PairMaker
from adaptlab.feedback.store import FeedbackStore, Vote, VoteConflict
from adaptlab.netbind import is_loopback

ANNOTATOR = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
KEY_COOKIE = "adaptlab_feedback_key"
OPEN_PATHS = {"/login", "/healthz"}


class VoteIn(BaseModel):
    pair_id: int = Field(ge=1)
    annotator: str = Field(pattern=ANNOTATOR.pattern)
    choice: Literal["A", "B", "tie", "both_bad"]
    rating_a: int | None = Field(default=None, ge=1, le=7)
    rating_b: int | None = Field(default=None, ge=1, le=7)
    comment: str = Field(default="", max_length=2000)


class LoginIn(BaseModel):
    key: str = Field(max_length=512)


def check_bind(host: str, api_key: str | None) -> None:
    """Binding anything but the loopback needs an API key."""
    if not is_loopback(host) and not api_key:
        raise ValueError(f"binding {host} exposes the page beyond this machine: give --api-key "
                         "(or ADAPTLAB_FEEDBACK_KEY), or bind 127.0.0.1")


def csrf_token(secret: bytes, annotator: str) -> str:
    return hmac.new(secret, annotator.encode(), hashlib.sha256).hexdigest()


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or origin.split("://", 1)[-1] == request.headers.get("host")


def create_app(store: FeedbackStore, total: int, maker: PairMaker | None = None, api_key: str | None = None,
               loopback: bool = True) -> FastAPI:
    """The app over `store`; `total` is the number of prompts, `maker` the worker filling the store."""
    app = FastAPI(title="adaptlab feedback", docs_url=None, redoc_url=None, openapi_url=None)
    secret = store.secret()
    if loopback:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1", "testserver"])

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        if api_key and request.url.path not in OPEN_PATHS:
            given = request.cookies.get(KEY_COOKIE) or request.headers.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                if request.method == "GET" and not request.url.path.startswith("/api/"):
                    return RedirectResponse("/login", status_code=303)
                return JSONResponse({"detail": "API key required"}, status_code=401)
        return await call_next(request)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "ready": store.progress("")["ready"], "total": total}

    @app.get("/login", response_class=HTMLResponse)
    def login_form() -> str:
        return login_page()

    @app.post("/login")
    def login(body: LoginIn, request: Request) -> JSONResponse:
        if not api_key or not _same_origin(request) or not hmac.compare_digest(body.key.encode(), api_key.encode()):
            raise HTTPException(403, "wrong key")
        response = JSONResponse({"ok": True})
        response.set_cookie(KEY_COOKIE, api_key, httponly=True, samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse)
    def index(annotator: str | None = None) -> HTMLResponse:
        if annotator is None:
            return HTMLResponse(entry_page())
        if not ANNOTATOR.match(annotator):
            return HTMLResponse(entry_page("an annotator id is 1-64 letters, digits or _ . @ -"), status_code=400)
        return HTMLResponse(vote_page(annotator, csrf_token(secret, annotator), total))

    @app.get("/api/next")
    def next_pair(annotator: str) -> dict:
        if not ANNOTATOR.match(annotator):
            raise HTTPException(400, "bad annotator id")
        pair = store.next_pair(annotator)
        progress = {**store.progress(annotator), "total": total}
        generating = maker is not None and maker.is_alive()
        return {"pair": pair and {"id": pair.id, "prompt": pair.prompt, "a": pair.answer_a, "b": pair.answer_b},
                "progress": progress, "done": pair is None and not generating,
                "error": str(maker.error) if maker is not None and maker.error else None}

    @app.post("/api/vote")
    def vote(body: VoteIn, request: Request) -> dict:
        if not request.headers.get("content-type", "").startswith("application/json") or not _same_origin(request):
            raise HTTPException(403, "votes come from the page itself")
        if not hmac.compare_digest(request.headers.get("x-csrf-token", ""), csrf_token(secret, body.annotator)):
            raise HTTPException(403, "missing or wrong CSRF token; reload the page")
        if store.pair(body.pair_id) is None:
            raise HTTPException(404, f"no pair {body.pair_id}")
        try:
            vote_id, new = store.vote(Vote(**body.model_dump()))
        except VoteConflict as e:
            raise HTTPException(409, str(e)) from None
        return {"vote_id": vote_id, "recorded": new}

    return app


def serve(prompts_file: str, policies: list[str], db: str, *, host: str = "127.0.0.1", port: int = 8700,
          api_key: str | None = None, max_new_tokens: int = 128, temperature: float = 0.8, seed: int = 0) -> None:
    """Load the policies, start generating pairs ahead in the background, and serve the page until stopped."""
    import uvicorn

    from adaptlab.feedback.pairs import load_policy, read_prompts

    check_bind(host, api_key)
    prompts = read_prompts(prompts_file)
    store = FeedbackStore(db)
    maker = PairMaker(store, prompts, [load_policy(p) for p in policies], max_new_tokens=max_new_tokens,
                      temperature=temperature, seed=seed)
    maker.start()
    try:
        uvicorn.run(create_app(store, len(prompts), maker, api_key, loopback=is_loopback(host)), host=host, port=port,
                    log_level="warning")
    finally:
        maker.stopping.set()
