"""A conversation with one model in the terminal: history, a system prompt, streamed replies.

Turns are rendered with the model's chat template exactly as in training (`data.templates`), and each
reply is decoded by the same step-level decoder the server batches with (`models.decode`).
"""

from __future__ import annotations

from collections.abc import Iterator

from adaptlab.data.templates import chat_prompt_ids
from adaptlab.models.decode import Lane, Row, SamplingParams
from adaptlab.models.generation import eos_token_ids, max_length, model_device, pad_token_id


class ChatSession:
    """History of one conversation; `reply` streams the assistant's answer and records it."""

    def __init__(self, model, tokenizer, params: SamplingParams, system: str | None = None):
        self.model, self.tokenizer, self.params = model, tokenizer, params
        self.system = system
        self.turns: list[dict[str, str]] = []

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.turns = []

    def set_system(self, text: str) -> None:
        """Replace the system prompt (empty text removes it)."""
        self.system = text or None

    def messages(self) -> list[dict[str, str]]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.turns

    def reply(self, text: str) -> Iterator[str]:
        """Stream the answer to `text` piece by piece; the whole answer joins the history at the end."""
        self.turns.append({"role": "user", "content": text})
        row = Row(chat_prompt_ids(self.messages(), self.tokenizer), self.params, "", self.tokenizer,
                  eos_token_ids(self.tokenizer, self.model), max_length(self.model))
        lane = Lane(lambda names, **inputs: self.model(**inputs), pad_token_id(self.tokenizer), model_device(self.model))
        answer, results = [], lane.join([row])
        while True:
            for _, piece in results:
                answer.append(piece)
                yield piece
            if row.finish_reason:
                break
            results = lane.step()
        self.turns.append({"role": "assistant", "content": "".join(answer)})
