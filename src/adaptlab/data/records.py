"""Typed records every data source maps onto, and the mapping of common layouts onto them.

Layouts understood: Alpaca ({instruction, input, output}), ShareGPT ({conversations: [{from, value}]}),
OpenAI messages ({messages: [{role, content}]}), preference ({prompt, chosen, rejected} as text, trl's
conversational layouts with message lists, or Anthropic's HH-RLHF transcripts {chosen, rejected}), prompts only
({prompt} as text or chat turns, for online RL), classification ({text, label}) and multiple choice ({question,
choices, answer}).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Instruction:
    instruction: str
    output: str
    input: str = ""


@dataclass(frozen=True)
class Chat:
    messages: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Preference:
    """A prompt and two responses, the first preferred. `prompt` is plain text or chat turns."""

    prompt: str | list[dict[str, str]]
    chosen: str
    rejected: str


@dataclass(frozen=True)
class Prompt:
    """A prompt with no answer, for objectives that sample their own (rloo, ppo). Text or chat turns."""

    prompt: str | list[dict[str, str]]


@dataclass(frozen=True)
class Classification:
    text: str
    label: str


@dataclass(frozen=True)
class MultipleChoice:
    question: str
    choices: list[str]
    answer: int


Record = Instruction | Chat | Preference | Prompt | Classification | MultipleChoice
RECORD_KINDS: dict[str, type] = {"instruction": Instruction, "chat": Chat, "preference": Preference, "prompt": Prompt,
                                 "classification": Classification, "multiple_choice": MultipleChoice}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}


class RecordError(ValueError):
    """A row that cannot become a record; the message names the file, the line and the field."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")


def _text(row: dict, key: str, where: str) -> str:
    if key not in row:
        raise RecordError(where, f"missing field {key!r} (fields present: {', '.join(row) or 'none'})")
    value = row[key]
    if not isinstance(value, str):
        raise RecordError(where, f"field {key!r} must be text, got {type(value).__name__}")
    return value


def _messages(items: Any, where: str, role_key: str, content_key: str, key: str,
              need_answer: bool = True) -> list[dict[str, str]]:
    if not isinstance(items, list) or not items:
        raise RecordError(where, f"field {key!r} must be a non-empty list of turns")
    out = []
    for i, turn in enumerate(items):
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            raise RecordError(where, f"field {key!r}[{i}] needs {role_key!r} and {content_key!r}")
        role = SHAREGPT_ROLES.get(str(turn[role_key]).lower())
        if role is None:
            raise RecordError(where, f"field {key!r}[{i}].{role_key} is {turn[role_key]!r}; "
                                     f"allowed: {', '.join(sorted(SHAREGPT_ROLES))}")
        out.append({"role": role, "content": str(turn[content_key])})
    if need_answer and not any(t["role"] == "assistant" for t in out):
        raise RecordError(where, f"field {key!r} has no assistant turn to learn from")
    return out


def detect_kind(row: dict) -> str:
    """Guess the record kind from a row's field names."""
    keys = set(row)
    if "messages" in keys or "conversations" in keys:
        return "chat"
    if keys & {"chosen", "rejected"}:
        return "preference"
    if "prompt" in keys:
        return "prompt"
    if {"question", "choices", "answer"} <= keys:
        return "multiple_choice"
    if {"text", "label"} <= keys:
        return "classification"
    return "instruction"


def to_record(row: Any, where: str, kind: str | None = None) -> Record:
    """Map one raw row onto a typed record. `where` is "file:line" for error messages."""
    if not isinstance(row, dict):
        raise RecordError(where, f"expected a JSON object, got {type(row).__name__}")
    kind = kind or detect_kind(row)
    if kind not in RECORD_KINDS:
        raise RecordError(where, f"unknown record kind {kind!r}; choose one of: {', '.join(RECORD_KINDS)}")
    if kind == "instruction":
        inp = row.get("input") or ""
        if not isinstance(inp, str):
            raise RecordError(where, f"field 'input' must be text, got {type(inp).__name__}")
        return Instruction(instruction=_text(row, "instruction", where), input=inp, output=_text(row, "output", where))
    if kind == "chat":
        if "messages" in row:
            return Chat(_messages(row["messages"], where, "role", "content", "messages"))
        return Chat(_messages(row.get("conversations"), where, "from", "value", "conversations"))
    if kind == "preference":
        return _preference(row, where)
    if kind == "prompt":
        return _prompt(row, where)
    if kind == "classification":
        return Classification(text=_text(row, "text", where), label=str(row.get("label")))
    choices = row.get("choices")
    if not isinstance(choices, list) or len(choices) < 2:
        raise RecordError(where, "field 'choices' must be a list of at least two options")
    answer = row.get("answer")
    if isinstance(answer, str) and answer.strip().upper() in "ABCDEFGH" and len(answer.strip()) == 1:
        answer = "ABCDEFGH".index(answer.strip().upper())
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise RecordError(where, f"field 'answer' must index 'choices' (0..{len(choices) - 1}), got {answer!r}")
    return MultipleChoice(question=_text(row, "question", where), choices=[str(c) for c in choices], answer=answer)


def _prompt(row: dict, where: str) -> Prompt:
    value = row.get("prompt")
    if isinstance(value, list):
        return Prompt(_messages(value, where, "role", "content", "prompt", need_answer=False))
    text = _text(row, "prompt", where)
    if not text.strip():
        raise RecordError(where, "field 'prompt' is empty")
    return Prompt(text)


def require_responses(records: list[Record], objective: str) -> None:
    """Refuse prompts-only records for an objective that learns from given responses (sft, reward, dpo)."""
    n = sum(isinstance(r, Prompt) for r in records)
    if n:
        raise ValueError(f"objective {objective} learns from given responses, but {n} of {len(records)} records are "
                         "prompts only ({\"prompt\": ...} rows, which feed the RL objectives rloo and ppo); give "
                         "instruction/chat rows for sft or {prompt, chosen, rejected} pairs for reward and dpo")


TRANSCRIPT_TURN = re.compile(r"\n\n(Human|Assistant):")


def transcript_messages(text: str) -> list[dict[str, str]]:
    """Anthropic HH-RLHF's "\\n\\nHuman: ...\\n\\nAssistant: ..." transcript as chat turns."""
    parts = TRANSCRIPT_TURN.split(text)
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2])]


def _split_last_answer(messages: list[dict[str, str]], where: str, key: str) -> tuple[list[dict[str, str]], str]:
    if not messages or messages[-1]["role"] != "assistant":
        raise RecordError(where, f"field {key!r} must end with an assistant turn")
    return messages[:-1], messages[-1]["content"]


def _pref_side(row: dict, key: str, where: str) -> tuple[list[dict[str, str]] | None, str]:
    """(turns before the answer or None, the answer) of `chosen`/`rejected` in any supported layout."""
    if key not in row or row[key] is None:
        raise RecordError(where, f"missing field {key!r} (fields present: {', '.join(row) or 'none'})")
    value = row[key]
    if isinstance(value, list):  # trl conversational: [{"role": "assistant", ...}] or the whole conversation
        return _split_last_answer(_messages(value, where, "role", "content", key), where, key)
    if not isinstance(value, str):
        raise RecordError(where, f"field {key!r} must be text or a list of turns, got {type(value).__name__}")
    if "prompt" not in row and TRANSCRIPT_TURN.search(value):  # Anthropic: the whole dialogue in each side
        return _split_last_answer(transcript_messages(value), where, key)
    return None, value


def _preference(row: dict, where: str) -> Preference:
    """A preference pair from {prompt, chosen, rejected} (text or turns) or from whole dialogues per side."""
    before_c, chosen = _pref_side(row, "chosen", where)
    before_r, rejected = _pref_side(row, "rejected", where)
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        prompt = _messages(prompt, where, "role", "content", "prompt", need_answer=False) if prompt else []
        prompt = (prompt + before_c) if before_c else prompt
    elif prompt is not None and not isinstance(prompt, str):
        raise RecordError(where, f"field 'prompt' must be text or a list of turns, got {type(prompt).__name__}")
    elif prompt is None and before_c is not None:
        if before_c != before_r:
            raise RecordError(where, "fields 'chosen' and 'rejected' continue different conversations")
        prompt = before_c
    if chosen.strip() == rejected.strip():
        raise RecordError(where, "fields 'chosen' and 'rejected' are identical: the pair teaches nothing")
    return Preference(prompt=prompt or "", chosen=chosen, rejected=rejected)
