"""OpenAI-compatible request bodies, validated field by field (a bad field is a 400 naming it).

Fields the OpenAI API has and this server does not use (presence_penalty, user, ...) are accepted and
ignored, so the official clients work unchanged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from adaptlab.models.decode import SamplingParams

MAX_STOP = 4            # OpenAI's own limit on stop sequences
MAX_STOP_CHARS = 64
MAX_N = 8


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]

    def as_template(self) -> dict[str, str]:
        """The turn as the chat template takes it (text parts joined; `developer` is a system turn)."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class Sampling(BaseModel):
    """Sampling fields shared by /v1/completions and /v1/chat/completions."""

    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences are allowed, got {len(stops)}")
        if any(not s or len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"each stop sequence must have 1 to {MAX_STOP_CHARS} characters")
        return stops

    def sampling(self, default_max: int) -> SamplingParams:
        wanted = self.max_completion_tokens or self.max_tokens or default_max
        return SamplingParams(max_tokens=wanted, temperature=self.temperature, top_p=self.top_p,
                              stop=list(self.stop or []), seed=self.seed)


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Sampling):
    prompt: str
