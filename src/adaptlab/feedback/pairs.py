"""Answer pairs for the feedback page, generated ahead by a background worker so the page never waits.

Each prompt gets two answers: one policy sampled twice, or two policies once each. Which answer is shown
on the left is drawn per prompt (seeded, so a restart draws the same) and stored with the pair.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from pathlib import Path

from adaptlab.data.sources import LOCAL_FORMATS, load_records
from adaptlab.feedback.store import FeedbackStore
from adaptlab.models.generation import generate

log = logging.getLogger(__name__)


@dataclass
class Policy:
    """A model (optionally with a peft adapter) that answers prompts through its chat template."""
    name: str
    model: object
    tokenizer: object

    def answer(self, prompts: list[str], max_new_tokens: int, temperature: float) -> list[str]:
        texts = [_chat(self.tokenizer, p) for p in prompts]
        return [a.strip() for a in generate(self.model, self.tokenizer, texts, max_new_tokens=max_new_tokens,
                                             temperature=temperature, batch_size=len(texts))]


def _chat(tokenizer, prompt: str) -> str:
    if getattr(tokenizer, "chat_template", None) is None:
        return prompt
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)


def load_policy(spec: str, dtype: str = "auto") -> Policy:
    """`MODEL` or `MODEL:ADAPTER` (a peft adapter folder, e.g. an adaptlab LoRA artifact)."""
    from adaptlab.models import load_model

    head, sep, tail = spec.rpartition(":")
    model_ref, adapter = (head, tail) if sep and head and Path(tail).is_dir() else (spec, "")
    loaded = load_model(model_ref, dtype=dtype)
    model = loaded.model
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).eval()
    return Policy(name=spec, model=model, tokenizer=loaded.tokenizer)


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a data file of prompts-only rows ({"prompt": text}, read by `data.load_records` in any of its
    formats) or a text file (one prompt per line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prompts file {path} does not exist")
    if path.suffix in LOCAL_FORMATS:
        records = load_records(str(path), kind="prompt")
        if any(not isinstance(r.prompt, str) for r in records):
            raise ValueError(f"{path}: the feedback page shows text prompts; give each row a text 'prompt'")
        return [r.prompt for r in records]
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


class PairMaker(threading.Thread):
    """Fills the store with one pair per prompt not yet paired, `batch` prompts per generation call."""

    def __init__(self, store: FeedbackStore, prompts: list[str], policies: list[Policy], *, max_new_tokens: int = 128,
                 temperature: float = 0.8, batch: int = 4, seed: int = 0):
        super().__init__(name="feedback-pairs", daemon=True)
        if not 1 <= len(policies) <= 2:
            raise ValueError("give one policy (sampled twice) or two policies")
        self.store, self.prompts, self.policies = store, prompts, policies
        self.max_new_tokens, self.temperature, self.batch, self.seed = max_new_tokens, temperature, batch, seed
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            todo = [i for i in range(len(self.prompts)) if i not in self.store.done_prompts()]
            for start in range(0, len(todo), self.batch):
                if self.stopping.is_set():
                    return
                self._make(todo[start: start + self.batch])
        except BaseException as e:   # kept for the page's status; the server keeps serving stored pairs
            log.exception("pair generation failed")
            self.error = e

    def _make(self, indices: list[int]) -> None:
        prompts = [self.prompts[i] for i in indices]
        first, second = self.policies[0], self.policies[-1]
        answers = zip(first.answer(prompts, self.max_new_tokens, self.temperature),
                      second.answer(prompts, self.max_new_tokens, self.temperature))
        for i, prompt, pair in zip(indices, prompts, answers):
            swapped = random.Random(self.seed * 1_000_003 + i).random() < 0.5
            self.store.add_pair(i, prompt, pair, (first.name, second.name), swapped)
