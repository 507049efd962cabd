"""Render a PromptSpec, the exemplars and a query into chat messages and through the chat template.

The conversation is: the system message (`role`), then one user/assistant pair per exemplar, then the
query. The first user turn states the task once (instruction, output format, steps) before its input;
later user turns carry only their input, so the k demonstrations read as a conversation in which the
model has already answered k times. With `structure` on, each part sits under its section heading.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from adaptlab.prompting.spec import PromptSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def fill(text: str, choices: Sequence[str] | None) -> str:
    """Put the answer words into a spec text's `{labels}` placeholder (the only placeholder)."""
    return text.replace("{labels}", ", ".join(choices)) if choices else text


def _section(spec: PromptSpec, heading: str, body: str) -> str:
    return f"## {heading}\n{body}" if spec.structure else body


def task_parts(spec: PromptSpec, choices: Sequence[str] | None = None) -> list[str]:
    """The parts that state the task: instruction, output format, steps (each only when set)."""
    names = spec.structure
    parts = []
    if spec.instruction:
        parts.append(_section(spec, names.task if names else "", fill(spec.instruction, choices)))
    if spec.output_format:
        parts.append(_section(spec, names.format if names else "", fill(spec.output_format, choices)))
    if spec.steps:
        steps = [fill(s, choices) for s in spec.steps]
        body = steps[0] if len(steps) == 1 else "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        parts.append(_section(spec, names.steps if names else "", body))
    return parts


def input_part(spec: PromptSpec, text: str) -> str:
    """The user's input, inside the delimiters and under the input heading when those are on."""
    if spec.delimiters:
        text = f"{spec.delimiters[0]}\n{text}\n{spec.delimiters[1]}"
    return _section(spec, spec.structure.input if spec.structure else "", text)


def build_messages(spec: PromptSpec, query: str, exemplars: Sequence[tuple[str, str]] = (),
                   choices: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Chat messages for a query; `exemplars` are (input, answer) pairs, `choices` the answer words."""
    messages = [{"role": "system", "content": fill(spec.role, choices)}] if spec.role else []
    inputs = [text for text, _ in exemplars] + [query]
    answers = [answer for _, answer in exemplars]
    for i, text in enumerate(inputs):
        parts = (task_parts(spec, choices) if i == 0 else []) + [input_part(spec, text)]
        messages.append({"role": "user", "content": "\n\n".join(parts)})
        if i < len(answers):
            messages.append({"role": "assistant", "content": answers[i]})
    return messages


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """The prompt text through the model's chat template, ending where the assistant's answer starts."""
    if tokenizer.chat_template is None:
        raise ValueError("this tokenizer has no chat template; pick a chat model or set tokenizer.chat_template")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
