"""How each kind of task asks the model and scores one sample; registries of metrics and answer extractors.

A kind runner takes (model, tokenizer, task, samples, protocol, progress) and returns one `Scored`
per sample with its metric values, the model's output and the extracted answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from adaptlab.eval import metrics, sandbox
from adaptlab.eval.tasks import Protocol, Sample, Task
from adaptlab.models import generation


@dataclass
class Scored:
    sample: Sample
    scores: dict[str, float]
    output: str = ""
    answer: str | None = None
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------- answer extraction
def _extract_number(text: str, strict: bool, choices: Sequence[str]) -> str | None:
    if strict:   # only an explicit "The answer is N" / "#### N" counts
        m = re.search(r"(?:####|[Tt]he (?:final )?answer is)[:\s]*(-?\$?\d[\d,]*(?:\.\d+)?)", text)
        return metrics.extract_number(m.group(0)) if m else None
    return metrics.extract_number(text)


def _extract_answer_is(text: str, strict: bool, choices: Sequence[str]) -> str | None:
    m = re.search(r"[Tt]he answer is[:\s]*(.*?)(?:\.\s|\.?$|\n)", text.strip())
    if m:
        return m.group(1).strip()
    if strict:
        return None
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip().rstrip(".") if lines else None


def parse_choice(text: str, choices: Sequence[str]) -> str | None:
    """The choice that occurs last in `text` (case-insensitive, whole words; reasoning comes before the
    answer), or None when the text names none."""
    best, best_at = None, -1
    for choice in choices:
        word = choice.strip()
        for m in re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE):
            if m.start() > best_at:
                best, best_at = word, m.start()
    return best


def short_answer(text: str) -> str:
    """The answer proper: the first line, without an "The answer is:" lead-in or source markers."""
    line = text.strip().split("\n", 1)[0]
    line = re.sub(r"\[\d+(?:\s*,\s*\d+)*\]|\((?:squad:)?[^()]*#\d+\)", " ", line)
    line = re.sub(r"^\s*(?:the answer is|answer)\s*:?\s*", "", line, flags=re.IGNORECASE)
    return " ".join(line.split()).rstrip(".")


Extractor = Callable[[str, bool, Sequence[str]], str | None]
"""(generated text, strict, the sample's choices) -> the answer, or None when strict finds none."""
EXTRACTORS: dict[str, Extractor] = {
    "none": lambda text, strict, choices: text.strip(),
    "number": _extract_number,
    "answer_is": _extract_answer_is,
    "choice": lambda text, strict, choices: parse_choice(text, choices),
    "short": lambda text, strict, choices: short_answer(text),
}


# ----------------------------------------------------------------- metrics of a generated answer
def _raw_match(answer: str, refs: list[str]) -> float:
    """Case-insensitive match, punctuation kept (BBH answers like "(A)" or "] ]" are punctuation)."""
    a = answer.strip().rstrip(".").strip().lower()
    return float(any(a == r.strip().lower() for r in refs))


def _number_match(answer: str, refs: list[str]) -> float:
    return float(any(answer == metrics.extract_number(r) for r in refs))


METRICS: dict[str, Callable[[str, list[str]], float]] = {
    "exact_match": metrics.exact_match,
    "f1": metrics.token_f1,
    "alias_match": metrics.alias_match,
    "number_match": _number_match,
    "exact_match_raw": _raw_match,
}
CHOICE_METRICS = ("acc", "acc_norm")       # multiple_choice / classify
PASS_AT = (1, 10, 100)                     # code: the k of pass@k reported when samples >= k


# ----------------------------------------------------------------- kinds
def run_choices(model, tokenizer, task: Task, samples: list[Sample], protocol: Protocol,
                progress: generation.Progress | None = None, batch_size: int = 16) -> list[Scored]:
    """Score every choice by log p(choice | context); acc takes the argmax, acc_norm divides by the
    choice's length in characters first (lm-eval's acc_norm)."""
    requests = [(s.context, c) for s in samples for c in s.choices]
    lls = generation.loglikelihoods(model, tokenizer, requests, batch_size=batch_size,
                                 progress=_per_item(progress, [len(s.choices) for s in samples]))
    out, k = [], 0
    for s in samples:
        ll = [lp for lp, _ in lls[k: k + len(s.choices)]]
        k += len(s.choices)
        pred = max(range(len(ll)), key=ll.__getitem__)
        norm = [v / max(len(c.strip()), 1) for v, c in zip(ll, s.choices)]
        pred_norm = max(range(len(norm)), key=norm.__getitem__)
        out.append(Scored(s, {"acc": float(pred == s.target), "acc_norm": float(pred_norm == s.target)},
                          output=s.choices[pred], answer=s.choices[pred].strip(), extra={"loglikelihoods": ll}))
    return out


def run_generate(model, tokenizer, task: Task, samples: list[Sample], protocol: Protocol,
                 progress: generation.Progress | None = None, batch_size: int = 8) -> list[Scored]:
    """Greedy completions (stopped at the task's stop strings), the answer extracted, then the task's
    metric and its `also` metrics against the references."""
    outputs = generation.generate(model, tokenizer, [s.context for s in samples], max_new_tokens=task.max_new_tokens,
                               stop=list(task.stop), batch_size=batch_size, progress=progress)
    extract = EXTRACTORS[task.extract]
    out = []
    for s, text in zip(samples, outputs):
        answer = extract(text, protocol.extraction == "strict", s.choices)
        scores = {m: 0.0 if answer is None else METRICS[m](answer, s.target) for m in (task.metric, *task.also)}
        out.append(Scored(s, scores, output=text, answer=answer))
    return out


def run_code(model, tokenizer, task: Task, samples: list[Sample], protocol: Protocol,
             progress: generation.Progress | None = None, batch_size: int = 8) -> list[Scored]:
    """n = protocol.samples completions per item (greedy when n = 1, else sampled at protocol.temperature);
    each program = prompt + completion + tests runs in the sandbox; with c of n passing, pass@k for every
    k in PASS_AT with k <= n by the unbiased estimator (Chen et al. 2021)."""
    n = protocol.samples
    if protocol.temperature > 0:
        torch.manual_seed(protocol.seed)
    outputs = generation.generate(model, tokenizer, [s.context for s in samples for _ in range(n)],
                               max_new_tokens=task.max_new_tokens, stop=list(task.stop), batch_size=batch_size,
                               temperature=protocol.temperature, progress=_per_item(progress, [n] * len(samples)))
    out = []
    for i, s in enumerate(samples):
        completions = outputs[i * n: (i + 1) * n]
        results = [sandbox.run_program(f"{s.context}{c}\n\n{s.target}") for c in completions]
        passed = sum(r.passed for r in results)
        scores = {f"pass@{k}": metrics.pass_at_k(n, passed, k) for k in PASS_AT if k <= n}
        first = results[0]
        out.append(Scored(s, scores, output=completions[0],
                          extra={"passed": passed, "n": n, "timed_out": first.timed_out, "stderr": first.stderr[-500:],
                                 "isolation": list(first.isolation),
                                 **({"completions": completions} if n > 1 else {})}))
    return out


ANSWER_PROMPT = "Question: {query}\nAnswer:"     # p(candidate | query)
QUERY_PROMPT = "Text: {candidate}\nQuestion:"   # p(query | candidate)


def pmi_best(model, tokenizer, queries: list[str], candidates: list[list[str]], batch_size: int = 16,
             progress: generation.Progress | None = None) -> list[tuple[int | None, list[float]]]:
    """Per query, the candidate with the highest pointwise mutual information with it, estimated both ways
    and averaged (domain-conditional PMI, Holtzman et al. 2021, "Surface Form Competition"; the reverse
    direction is the noisy-channel score of Min et al. 2022):

        PMI(c; q) = 1/2 [ log p(c | "Question: q Answer:") - log p(c | "Answer:")
                        + log p(q | "Text: c Question:")   - log p(q | "Question:") ]

    By Bayes both brackets estimate log p(c, q) / (p(c) p(q)); a candidate wins by how much it and the
    query predict each other, not by being short or fluent. Returns (best index, each candidate's PMI);
    (None, []) for a query without candidates."""
    requests = []
    for q, cs in zip(queries, candidates):
        requests.append(("Question:", f" {q}"))
        for c in cs:
            requests += [(ANSWER_PROMPT.format(query=q), f" {c}"), ("Answer:", f" {c}"),
                         (QUERY_PROMPT.format(candidate=c), f" {q}")]
    lls = [ll for ll, _ in generation.loglikelihoods(model, tokenizer, requests, batch_size=batch_size,
                                                     progress=_per_item(progress, [1 + 3 * len(cs) for cs in candidates]))]
    out, k = [], 0
    for cs in candidates:
        q_base, k = lls[k], k + 1
        pmi = [(lls[k + 3 * j] - lls[k + 3 * j + 1] + lls[k + 3 * j + 2] - q_base) / 2 for j in range(len(cs))]
        k += 3 * len(cs)
        out.append((max(range(len(pmi)), key=pmi.__getitem__) if pmi else None, pmi))
    return out


def run_extract(model, tokenizer, task: Task, samples: list[Sample], protocol: Protocol,
                progress: generation.Progress | None = None, batch_size: int = 16) -> list[Scored]:
    """Extractive answering: the sample's candidate spans (`choices`, e.g. sentences of retrieved
    sources) ranked by PMI with its query (`context`, e.g. the question; `pmi_best`); the best one is
    scored like a generated answer by the task's metric and its `also` metrics."""
    ranked = pmi_best(model, tokenizer, [s.context for s in samples], [s.choices for s in samples],
                      batch_size, progress)
    out = []
    for s, (best, pmi) in zip(samples, ranked):
        answer = s.choices[best] if best is not None else ""
        scores = {m: METRICS[m](answer, s.target) for m in (task.metric, *task.also)}
        out.append(Scored(s, scores, output=answer, answer=answer, extra={"pmi": pmi, "choice": best}))
    return out


KINDS: dict[str, Callable[..., list[Scored]]] = {
    "multiple_choice": run_choices,
    "classify": run_choices,        # a fixed label set scored like choices
    "generate": run_generate,
    "code": run_code,
    "extract": run_extract,         # the best of the sample's candidate spans, scored like a generated answer
}


def _per_item(progress: generation.Progress | None, sizes: list[int]) -> generation.Progress | None:
    """Convert request counts into finished-item counts (an item is done when all its choices are)."""
    if progress is None:
        return None
    state = {"requests": 0, "items": 0}
    bounds, total = [], 0
    for n in sizes:
        total += n
        bounds.append(total)

    def step(n: int) -> None:
        state["requests"] += n
        done = state["items"]
        while done < len(bounds) and bounds[done] <= state["requests"]:
            done += 1
        progress(done - state["items"])
        state["items"] = done
    return step
