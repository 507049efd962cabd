"""The JSON OpenAI's API returns for a chat completion and a text completion, whole and as stream chunks."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """How one endpoint names its objects and wraps a choice's text."""

    prefix: str
    object: str
    chunk_object: str
    text_key: str | None   # completions: "text"; chat: None (a message / delta)

    def choice(self, index: int, text: str, finish_reason: str | None) -> dict:
        body = {"text": text, "logprobs": None} if self.text_key else {"message": {"role": "assistant", "content": text}}
        return {"index": index, **body, "finish_reason": finish_reason}

    def delta(self, index: int, text: str, finish_reason: str | None, first: bool) -> dict:
        if self.text_key:
            return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
        delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
        return {"index": index, "delta": delta, "finish_reason": finish_reason}

    def envelope(self, rid: str, model: str, choices: list[dict], chunk: bool) -> dict:
        return {"id": rid, "object": self.chunk_object if chunk else self.object, "created": int(time.time()),
                "model": model, "choices": choices}

    def new_id(self) -> str:
        return f"{self.prefix}-{uuid.uuid4().hex[:24]}"


CHAT = Shape("chatcmpl", "chat.completion", "chat.completion.chunk", None)
COMPLETION = Shape("cmpl", "text_completion", "text_completion", "text")


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    """OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
