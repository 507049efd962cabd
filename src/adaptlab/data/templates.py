"""Turn records into token ids and labels through the tokenizer's chat template.

Loss falls only on assistant tokens: every other position gets the label -100, which cross-entropy
ignores. Each assistant turn keeps the template's end-of-turn token (for SmolLM2 `<|im_end|>`, which is
also its EOS) in its labels, so a fine-tuned model learns to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from adaptlab.data.records import Chat, Instruction, Record

IGNORE = -100


@dataclass
class Example:
    """One tokenized training example."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_targets(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


def to_messages(record: Record) -> list[dict[str, str]]:
    """The chat turns of an SFT record."""
    if isinstance(record, Chat):
        return record.messages
    if isinstance(record, Instruction):
        prompt = record.instruction if not record.input else f"{record.instruction}\n\n{record.input}"
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": record.output}]
    raise TypeError(f"supervised fine-tuning needs instruction or chat records, got {type(record).__name__}")


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], generation_prompt: bool) -> list[int]:
    if tokenizer.chat_template is None:
        raise ValueError("this tokenizer has no chat template; pick a chat model or set tokenizer.chat_template")
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                        return_dict=False)
    return list(ids)


def tokenize_chat(messages: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase) -> Example:
    """Tokenize a conversation; labels are the assistant turns (with their end-of-turn), -100 elsewhere.

    Each turn's span is found by rendering the conversation up to it, so the result is exactly the
    template's own rendering of the whole conversation.
    """
    full = _render(tokenizer, messages, generation_prompt=False)
    labels = [IGNORE] * len(full)
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], generation_prompt=True))
        end = len(_render(tokenizer, messages[: i + 1], generation_prompt=False))
        if full[:end] != _render(tokenizer, messages[: i + 1], generation_prompt=False):
            raise ValueError("the chat template renders a prefix of the conversation differently from the "
                             "whole; cannot place the loss mask")
        labels[start:end] = full[start:end]
    return Example(input_ids=full, labels=labels)


def chat_prompt_ids(messages: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids of a conversation plus the generation prompt, rendered as in training (serving, chat)."""
    return _render(tokenizer, messages, generation_prompt=True)


def tokenize_record(record: Record, tokenizer: PreTrainedTokenizerBase, max_len: int | None = None) -> Example:
    """Tokenize an instruction/chat record for SFT, truncated to `max_len` tokens."""
    ex = tokenize_chat(to_messages(record), tokenizer)
    if max_len is not None and len(ex) > max_len:
        ex = Example(ex.input_ids[:max_len], ex.labels[:max_len])
    return ex
