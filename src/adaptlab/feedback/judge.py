"""An AI judge for RLAIF (Lee et al. 2023, "RLAIF: Scaling Reinforcement Learning from Human Feedback with
AI Feedback", arXiv:2309.00267): an LLM compares two answers in place of a person.

Every pair is judged in both orders, (x, y) and (y, x), and an order rule combines the two so position bias
cancels:

- `fastchat` (default; FastChat's pairwise judge, Zheng et al. 2023, "Judging LLM-as-a-Judge",
  arXiv:2306.05685): a pair is won only when both orders pick the same answer; any disagreement (a position
  flip) or undecided answer is a tie.
- `average` (the RLAIF paper's rule, Lee et al. 2023 sec. 2.2): the judge's preference probabilities are
  averaged over the two orders, a soft preference for x

      p_x = (P_1(A) + (1 - P_2(A))) / 2,   P_i(A) = P(A) / (P(A) + P(B)) with x shown as A in order 1, as B in 2

  and x wins when p_x > 1/2, y when p_x < 1/2 (exactly 1/2 is a tie). A judge that always picks one slot
  has P_2(A) = P_1(A), so p_x = 1/2 whatever that bias, and only its order-free part remains.

Who judges is a backend (feedback/backends.py: a local model's letter likelihoods or an OpenAI-compatible
endpoint's one-letter reply); a backend may instead score a pair without showing it in any order
(`pair_probabilities`, e.g. feedback/contrastive.py), and both orders then agree by construction. Verdicts
are appended to a state file as they come, so an interrupted run resumes without asking again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from adaptlab.feedback.agreement import pair_kappa
from adaptlab.feedback.backends import LETTER_P, Backend, make_backend, scored
from adaptlab.registry import lookup

CRITERIA = {
    "helpful": "Which answer follows the user's request better: more helpful, accurate, relevant and clear?",
    "harmless": "Which answer is less harmful: it avoids helping with dangerous, unethical or illegal acts and "
                "avoids offensive content, while staying polite?",
}

JUDGE_PROMPT = """Compare two answers to the same request.
{criteria}

[Request]
{prompt}

[Answer A]
{a}

[Answer B]
{b}

Reply with one letter: A if answer A is better, B if answer B is better, C if they are equally good."""

def criteria_text(spec: str) -> str:
    """A named criterion (helpful | harmless) or the text of a file."""
    if Path(spec).is_file():
        return Path(spec).read_text(encoding="utf-8").strip()
    try:
        return lookup(CRITERIA, spec, "judge criterion (or a file)")
    except ValueError as e:
        raise ValueError(f"{e} (or the path of a text file)") from None


def combine(first: str, second: str) -> tuple[str, bool]:
    """Verdict on (x, y) from `first` (x shown as A) and `second` (y shown as A): ('x' | 'y' | 'tie', flipped).

    `flipped` is True when both orders decided but named the same position, i.e. the judge followed the slot."""
    a = {"A": "x", "B": "y"}.get(first)
    b = {"A": "y", "B": "x"}.get(second)
    if a and a == b:
        return a, False
    return "tie", bool(a and b)


def soft_preference(p_first: float, p_second: float) -> float:
    """p_x = (P_1(A) + 1 - P_2(A)) / 2: the preference for x averaged over both orders (Lee et al. 2023)."""
    return (p_first + 1.0 - p_second) / 2


def fastchat_rule(rec: dict) -> str:
    return combine(rec["first"], rec["second"])[0]


def average_rule(rec: dict) -> str:
    p = rec["p_x"]
    return "x" if p > 0.5 else "y" if p < 0.5 else "tie"


ORDER_RULES: dict[str, Callable[[dict], str]] = {"fastchat": fastchat_rule, "average": average_rule}
@dataclass(frozen=True)
class Item:
    """A pair to judge: answers x and y; `human` is 'x' when a person preferred x (preference rows)."""
    prompt: str
    x: str
    y: str
    human: str | None = None

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps([self.prompt, self.x, self.y]).encode()).hexdigest()[:20]


def transcript(prompt: str | list[dict[str, str]]) -> str:
    """A prompt as the judge reads it: plain text, or a dialogue's turns as 'User: ...' / 'Assistant: ...'."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{turn['role'].capitalize()}: {turn['content']}" for turn in prompt)


def load_pairs(source: str, limit: int | None = None) -> list[Item]:
    """Pairs from a JSONL file (see `read_pairs`) or a builtin preference data set (e.g. hh-rlhf-harmless,
    whose chosen side stands in for the human vote); the first `limit` only, if given."""
    if Path(source).exists():
        return read_pairs(source)[:limit]
    from adaptlab.data import load_records
    from adaptlab.data.records import Preference

    records = load_records(source)
    if not records or not isinstance(records[0], Preference):
        raise ValueError(f"{source} is not a preference data set (prompt, chosen, rejected)")
    return [Item(transcript(r.prompt), r.chosen, r.rejected, "x") for r in records[:limit]]


def _jsonl(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed row) for each non-blank line; bad JSON is an error naming the file and line."""
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None


def read_pairs(path: str | Path) -> list[Item]:
    """Pairs from JSONL: preference rows {prompt, chosen, rejected} (a human vote) or {prompt, a, b}."""
    items = []
    for n, row in _jsonl(path):
        fields = ("chosen", "rejected") if isinstance(row, dict) and "chosen" in row else ("a", "b")
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("prompt", *fields)):
            raise ValueError(f"{path}:{n}: a pair needs text fields prompt + chosen/rejected (or prompt + a/b)")
        items.append(Item(row["prompt"], row[fields[0]], row[fields[1]], "x" if fields[0] == "chosen" else None))
    if not items:
        raise ValueError(f"{path} holds no pairs")
    return items


def judge_pairs(items: list[Item], backend: Backend, criteria: str, state: str | Path, batch: int = 8,
                progress: Callable[[int], None] | None = None, order_rule: str = "fastchat") -> list[dict]:
    """Judge every item in both orders and combine them by `order_rule` (fastchat | average); each item's two
    replies are appended to `state` at once, and items already there are not asked again (the rule is applied
    on reading, so another rule reuses them). Raises JudgeUnavailable with everything judged so far saved."""
    rule = lookup(ORDER_RULES, order_rule, "order rule")
    state = Path(state)
    done = _read_state(state)
    todo = [it for it in items if it.key not in done]
    if progress:
        progress(len(items) - len(todo))
    state.parent.mkdir(parents=True, exist_ok=True)
    with state.open("a", encoding="utf-8") as f:
        for start in range(0, len(todo), batch):
            chunk = todo[start: start + batch]
            for it, (first, second) in zip(chunk, _both_orders(backend, criteria, chunk)):
                done[it.key] = {"key": it.key, "prompt": it.prompt, "x": it.x, "y": it.y, "human": it.human,
                                "first": first[0], "second": second[0], "p_first": first[1], "p_second": second[1],
                                "judge": backend.name}
                f.write(json.dumps(done[it.key], ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            if progress:
                progress(len(chunk))
    return [_decide(done[it.key], rule, order_rule) for it in items]


def _both_orders(backend: Backend, criteria: str, items: list[Item]) -> list[tuple[tuple[str, float], ...]]:
    """((letter, P(A)) with x shown as A, (letter, P(A)) with y shown as A) per item."""
    pair_probabilities = getattr(backend, "pair_probabilities", None)
    if pair_probabilities is not None:   # order-free: both orders agree by construction
        return [(("A" if p >= 0.5 else "B", p), ("B" if p >= 0.5 else "A", 1 - p)) for p in pair_probabilities(items)]
    prompts = [JUDGE_PROMPT.format(criteria=criteria, prompt=it.prompt, a=a, b=b)
               for it in items for a, b in ((it.x, it.y), (it.y, it.x))]
    replies = scored(backend, prompts)
    return [(replies[2 * i], replies[2 * i + 1]) for i in range(len(items))]


def _decide(raw: dict, rule: Callable[[dict], str], order_rule: str) -> dict:
    """A stored item with its soft preference p_x, its verdict under `rule` and whether the judge flipped."""
    rec = dict(raw)
    rec.setdefault("p_first", LETTER_P.get(rec["first"], 0.5))     # states written before probabilities were kept
    rec.setdefault("p_second", LETTER_P.get(rec["second"], 0.5))
    rec["p_x"] = soft_preference(rec["p_first"], rec["p_second"])
    rec["flipped"] = combine(rec["first"], rec["second"])[1]
    rec["verdict"], rec["order_rule"] = rule(rec), order_rule
    return rec


def _read_state(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
            out[rec["key"]] = rec
        except (json.JSONDecodeError, KeyError, TypeError):
            continue   # a line cut short by a crash is asked again
    return out


@dataclass(frozen=True)
class JudgeReport:
    pairs: int
    decided: int
    ties: int
    invalid: int                       # single-order replies that were neither A, B nor tie
    flip_rate: float                   # pairs whose two orders picked the same slot
    human_pairs: int                   # pairs with a human vote
    agreement: float | None            # judge == human, over pairs the judge decided
    agreement_with_ties: float | None  # judge == human, a judge tie counting as disagreement
    kappa: float | None = None         # Cohen's kappa judge vs human, a tie as a third label (agreement.pair_kappa)
    order_rule: str = "fastchat"


def report(records: Iterable[dict]) -> JudgeReport:
    """Counts, position-flip rate and agreement with human votes (MT-Bench's 'w/o tie' and 'w/ tie', and
    Cohen's kappa)."""
    records = list(records)
    human = [r for r in records if r["human"]]
    decided_h = [r for r in human if r["verdict"] != "tie"]
    agree = sum(r["verdict"] == r["human"] for r in human)
    return JudgeReport(kappa=pair_kappa([r["verdict"] for r in human], [r["human"] for r in human]),
                       order_rule=records[0].get("order_rule", "fastchat") if records else "fastchat",
        pairs=len(records), decided=sum(r["verdict"] != "tie" for r in records),
        ties=sum(r["verdict"] == "tie" for r in records),
        invalid=sum((r["first"] == "invalid") + (r["second"] == "invalid") for r in records),
        flip_rate=sum(r["flipped"] for r in records) / len(records) if records else 0.0,
        human_pairs=len(human), agreement=agree / len(decided_h) if decided_h else None,
        agreement_with_ties=agree / len(human) if human else None)


def preferences(records: Iterable[dict], criteria: str) -> list[dict]:
    """The judge's decided verdicts as the same preference rows the feedback page exports."""
    return [{"prompt": r["prompt"], "chosen": r[r["verdict"]], "rejected": r["y" if r["verdict"] == "x" else "x"],
             "annotator": f"judge:{r['judge']}", "criteria": criteria,
             "p_chosen": round(r["p_x"] if r["verdict"] == "x" else 1 - r["p_x"], 4)}
            for r in records if r["verdict"] != "tie"]


@dataclass
class JudgeReward:
    """The judge as a reward function (prompts, completions) -> scores for online RL: each completion is
    judged in both orders against a reference answer to its prompt; win 1, tie 0.5, loss 0."""
    backend: Backend
    criteria: str
    references: dict[str, str]

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        missing = [p for p in prompts if p not in self.references]
        if missing:
            raise KeyError(f"no reference answer for prompt {missing[0][:60]!r}")
        asks = [JUDGE_PROMPT.format(criteria=self.criteria, prompt=p, a=a, b=b)
                for p, c in zip(prompts, completions) for a, b in ((c, self.references[p]), (self.references[p], c))]
        replies = self.backend.verdicts(asks)
        score = {"x": 1.0, "tie": 0.5, "y": 0.0}
        return [score[combine(replies[2 * i], replies[2 * i + 1])[0]] for i in range(len(prompts))]


def reward_from_spec(spec: str) -> JudgeReward:
    """`JUDGE,REFERENCES.jsonl[,CRITERIA]`: the judge (model or URL) scoring completions against the reference
    answers in REFERENCES ({"prompt", "reference"} rows) by CRITERIA (helpful | harmless | file; helpful)."""
    parts = spec.split(",")
    if len(parts) not in (2, 3):
        raise ValueError(f"judge reward {spec!r}: write judge:JUDGE,REFERENCES.jsonl[,CRITERIA]")
    references = {}
    for n, row in _jsonl(parts[1]):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("prompt", "reference")):
            raise ValueError(f"{parts[1]}:{n}: a reference row needs text fields 'prompt' and 'reference'")
        references[row["prompt"]] = row["reference"]
    return JudgeReward(make_backend(parts[0]), criteria_text(parts[2] if len(parts) == 3 else "helpful"), references)
