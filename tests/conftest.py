"""Shared fixtures: the tiny random Llama (seconds) and a copy of it saved as a local model directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adaptlab.models import tiny_llama


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer): a ~3M-parameter random Llama sharing the builtin tokenizer."""
    return tiny_llama()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny) -> Path:
    """The tiny model saved as a transformers directory, usable wherever a model name is."""
    model, tokenizer = tiny
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
