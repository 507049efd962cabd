"""Who judges (feedback/judge.py decides how their verdicts combine): a local adaptlab model or an
OpenAI-compatible endpoint, behind one `Backend` protocol.

- `LocalJudge`: the model reads the judge prompt, and whichever reply, "A" or "B", has the higher
  log-likelihood is its verdict; P(A) = sigmoid(log p("A") - log p("B")), the reply's probability
  renormalised over the two letters.
- `HttpJudge`: a chat-completions endpoint asked for a one-letter reply, parsed as A, B or tie, anything
  else counting as an invalid tie (as a probability: A 1, B 0, anything else 1/2); failures are retried with
  exponential backoff and then raise `JudgeUnavailable`, so the caller keeps what was judged so far.
- `ContrastiveJudge` (feedback/contrastive.py): scores a pair without showing it in any order.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol

from adaptlab.feedback.contrastive import ContrastiveJudge, instruction_text, sigmoid
from adaptlab.models.generation import loglikelihoods
from adaptlab.registry import lookup

VERDICT = re.compile(r"^\W*(A|B|C|TIE)\b", re.IGNORECASE)


def parse_verdict(reply: str) -> str:
    """'A', 'B', 'tie' or 'invalid' (a reply that is none of them)."""
    m = VERDICT.match(reply.strip())
    if not m:
        return "invalid"
    letter = m.group(1).upper()
    return letter if letter in ("A", "B") else "tie"


LETTER_P = {"A": 1.0, "B": 0.0}   # P(A) of a one-letter reply; tie or invalid: 1/2


class Backend(Protocol):
    name: str

    def verdicts(self, prompts: list[str]) -> list[str]:
        """'A' | 'B' | 'tie' | 'invalid' for each judge prompt."""


def scored(backend: Backend, prompts: list[str]) -> list[tuple[str, float]]:
    """(verdict letter, P(A)) per judge prompt: from the backend's probabilities when it has them, else from
    its letters (A 1, B 0, anything else 1/2)."""
    probabilities = getattr(backend, "probabilities", None)
    if probabilities is None:
        return [(v, LETTER_P.get(v, 0.5)) for v in backend.verdicts(prompts)]
    return [("A" if p >= 0.5 else "B", p) for p in probabilities(prompts)]


class JudgeUnavailable(RuntimeError):
    """The endpoint did not answer after every retry."""


@dataclass
class LocalJudge:
    """Any adaptlab model as judge: the reply with the higher log-likelihood, "A" or "B", is its verdict."""
    model: object
    tokenizer: object
    name: str = "local"
    batch_size: int = 8

    def verdicts(self, prompts: list[str]) -> list[str]:
        return ["A" if p >= 0.5 else "B" for p in self.probabilities(prompts)]

    def probabilities(self, prompts: list[str]) -> list[float]:
        """P(A) = sigmoid(log p("A") - log p("B")): the reply's probability renormalised over the two letters."""
        contexts = [self._chat(p) for p in prompts]
        scores = loglikelihoods(self.model, self.tokenizer, [(c, letter) for c in contexts for letter in ("A", "B")],
                                batch_size=self.batch_size)
        return [sigmoid(scores[2 * i][0] - scores[2 * i + 1][0]) for i in range(len(prompts))]

    def _chat(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None) is None:
            return prompt + "\nAnswer:"
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)


@dataclass
class HttpJudge:
    """An OpenAI-compatible chat-completions endpoint; key from ADAPTLAB_JUDGE_KEY or OPENAI_API_KEY."""
    url: str
    model: str = "gpt-4o-mini"
    retries: int = 5
    backoff: float = 1.0      # seconds before the first retry; doubles each time
    timeout: float = 60.0

    @property
    def name(self) -> str:
        return f"{self.model}@{self.url}"

    def verdicts(self, prompts: list[str]) -> list[str]:
        return [parse_verdict(self._ask(p)) for p in prompts]

    def _ask(self, prompt: str) -> str:
        url = self.url if self.url.rstrip("/").endswith("/chat/completions") else self.url.rstrip("/") + "/chat/completions"
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                           "temperature": 0, "max_tokens": 4}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get("ADAPTLAB_JUDGE_KEY") or os.environ.get("OPENAI_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=self.timeout) as r:
                    return str(json.loads(r.read())["choices"][0]["message"]["content"])
            except urllib.error.HTTPError as e:
                if e.code not in (408, 429) and e.code < 500:
                    raise JudgeUnavailable(f"{url} refused the request: HTTP {e.code} {e.reason}") from None
                error = f"HTTP {e.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                error = str(getattr(e, "reason", e))
            except (KeyError, IndexError, TypeError, ValueError):
                return ""   # an answer without a message: counted as an invalid verdict
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** attempt)
        raise JudgeUnavailable(f"{url} did not answer after {self.retries + 1} attempts ({error})")


SCORINGS = {"letters": "the verdict letter's likelihood after the judge prompt (both orders)",
            "contrastive": "log p(answer | criterion, prompt) - log p(answer | prompt) (feedback/contrastive.py)"}


def make_backend(spec: str, endpoint_model: str | None = None, dtype: str = "auto", scoring: str = "letters",
                 criteria: str = "helpful") -> Backend:
    """An http(s) URL is an OpenAI-compatible endpoint (model from `endpoint_model` or ADAPTLAB_JUDGE_MODEL);
    anything else is an adaptlab model reference loaded locally, judging by `scoring` (see SCORINGS; the
    contrastive one reads `criteria`: helpful | harmless | a file)."""
    lookup(SCORINGS, scoring, "judge scoring")
    if spec.startswith(("http://", "https://")):
        if scoring != "letters":
            raise ValueError(f"an endpoint judge replies with letters; scoring {scoring!r} needs a local model")
        model = endpoint_model or os.environ.get("ADAPTLAB_JUDGE_MODEL") or HttpJudge.model
        return HttpJudge(spec, model=model)
    from adaptlab.models import load_model

    loaded = load_model(spec, dtype=dtype)
    if scoring == "contrastive":
        return ContrastiveJudge(loaded.model, loaded.tokenizer, instruction_text(criteria), name=f"contrastive:{spec}")
    return LocalJudge(loaded.model, loaded.tokenizer, name=spec)
