"""Scoring functions for generated answers: pure, deterministic, no model involved."""

from __future__ import annotations

import collections
import re
import string
from math import comb

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
# a number as people write it: optional sign, thousands separators, decimals (GSM8K answers: "1,234", "-3.5")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation (Rajpurkar et al. 2016, official eval script):
    lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, references: list[str]) -> float:
    """1.0 when the normalised prediction equals any normalised reference, else 0.0 (SQuAD EM)."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in references))


def _f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: list[str]) -> float:
    """SQuAD token F1: F1 = 2PR/(P+R) over the bag of normalised tokens, maximised over the references."""
    return max((_f1(prediction, r) for r in references), default=0.0)


def alias_match(prediction: str, references: list[str]) -> float:
    """1.0 when any normalised alias occurs as a token span in the normalised prediction (TriviaQA-style)."""
    pred = f" {normalize_answer(prediction)} "
    return float(any(f" {a} " in pred for a in (normalize_answer(r) for r in references) if a))


def _clean_number(raw: str) -> str:
    s = raw.replace(",", "").replace("$", "")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def extract_number(text: str) -> str | None:
    """The final answer number of a chain of thought, canonicalised ("1,234.50" -> "1234.5").

    Prefers the GSM8K answer marker (`#### 42`) or "The answer is 42"; otherwise the last number
    in the text (the "flexible" extraction of lm-eval's gsm8k task)."""
    for marker in (r"####\s*", r"[Tt]he (?:final )?answer is[:\s]*"):
        m = re.search(marker + r"(" + _NUMBER.pattern + r")", text)
        if m:
            return _clean_number(m.group(1))
    nums = _NUMBER.findall(text)
    return _clean_number(nums[-1]) if nums else None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", eq. 1):

        pass@k = 1 - C(n - c, k) / C(n, k)

    for n samples of which c pass; exactly 1.0 when n - c < k."""
    if not 0 <= c <= n or k < 1 or k > n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)
