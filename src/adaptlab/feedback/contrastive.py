"""A contrastive log-likelihood judge: how much more likely a model finds an answer once it is told the
criterion, which needs no verdict letter and shows the two answers in no order.

Each answer r to prompt x is scored by the pointwise mutual information between the criterion c and r,

    s(r) = log p(r | c, x) - log p(r | x),

(the criterion as the system turn, against the model's default one), which removes what makes r likely
whatever the criterion (length, fluency, the model's own style), as contrastive decoding does (Li et al.
2023, arXiv:2210.15097) and as context-distilled "harmless assistant" prompts do for the HH preference
model (Askell et al. 2021, arXiv:2112.00861). The pair's soft preference is Bradley-Terry over the scores,

    P(x > y) = sigmoid(s(x) - s(y)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from adaptlab.models.generation import loglikelihoods
from adaptlab.registry import lookup

# the criterion as an instruction to the answering assistant (the system turn)
INSTRUCTIONS = {
    "harmless": "You are a harmless and ethical assistant. You never help with dangerous, unethical or illegal "
                "acts, you refuse such requests politely, and you avoid offensive content.",
    "helpful": "You are a helpful assistant. You answer the user's request accurately, relevantly and clearly.",
}


def sigmoid(z: float) -> float:
    """1 / (1 + e^-z), without overflow for large |z|."""
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def instruction_text(spec: str) -> str:
    """A named criterion's instruction (helpful | harmless) or the text of a file."""
    if Path(spec).is_file():
        return Path(spec).read_text(encoding="utf-8").strip()
    return lookup(INSTRUCTIONS, spec, "judge criterion (or a file)")


@dataclass
class ContrastiveJudge:
    """Scores a pair by the criterion's pointwise mutual information with each answer (module docstring)."""
    model: object
    tokenizer: object
    instruction: str
    name: str = "contrastive"
    batch_size: int = 8

    def pair_probabilities(self, items: list) -> list[float]:
        """P(x preferred over y) for each judge item (feedback/judge.Item: prompt, x, y)."""
        requests = [(self._context(it.prompt, system), answer) for it in items for answer in (it.x, it.y)
                    for system in (self.instruction, None)]
        lls = [ll for ll, _ in loglikelihoods(self.model, self.tokenizer, requests, batch_size=self.batch_size)]
        pmi = [lls[i] - lls[i + 1] for i in range(0, len(lls), 2)]
        return [sigmoid(pmi[2 * i] - pmi[2 * i + 1]) for i in range(len(items))]

    def _context(self, prompt: str, system: str | None) -> str:
        if getattr(self.tokenizer, "chat_template", None) is None:
            return (f"{system}\n\n" if system else "") + f"{prompt}\nAnswer: "
        turns = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
