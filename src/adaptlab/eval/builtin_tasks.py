"""The builtin tasks: one `Task(...)` each in `BUILTIN_TASKS` (registered by `catalog.py`), prompts as in the papers / lm-evaluation-harness.

Data are the vendored files under `adaptlab/data/builtin` (licenses beside them). Prompt formats:
MMLU follows lm-eval's `mmlu` (Hendrycks et al. 2021, 5-shot from dev); GSM8K the 8 chain-of-thought
exemplars of Wei et al. 2022; BBH the 3-shot CoT prompts of Suzgun et al. 2022; HumanEval is the
0-shot completion of Chen et al. 2021; NQ-open/TriviaQA are lm-eval's "Q:/A:" formats.
"""

from __future__ import annotations

import ast
import os
import socket
from functools import cache

from adaptlab.data.builtin import BUILTIN_DIR, builtin_path, read_rows
from adaptlab.eval.tasks import Protocol, Sample, Task

LETTERS = "ABCDEFGHIJ"


def _as_list(value) -> list:
    """Some vendored columns hold Python-literal lists ("['a', 'b']")."""
    return ast.literal_eval(value) if isinstance(value, str) else list(value)


# ---------------------------------------------------------------- MMLU
def _mmlu_item(row: dict) -> str:
    opts = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(_as_list(row["choices"])))
    return f"{row['question'].strip()}{opts}\nAnswer:"


def mmlu_header(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


@cache
def _mmlu_rows() -> tuple[list[dict], dict[str, list[dict]]]:
    dev: dict[str, list[dict]] = {}
    for r in read_rows("mmlu/dev.jsonl.gz"):
        dev.setdefault(r["subject"], []).append(r)
    return list(read_rows("mmlu/test.jsonl.gz")), dev


def _mmlu(p: Protocol) -> list[Sample]:
    test, dev = _mmlu_rows()
    prefixes = {s: mmlu_header(s) + "".join(f"{_mmlu_item(r)} {LETTERS[int(r['answer'])]}\n\n" for r in rows[: p.shots])
            for s, rows in dev.items()}
    return [Sample(id=f"mmlu/{r['subject']}/{i}", context=prefixes[r["subject"]] + _mmlu_item(r),
               target=int(r["answer"]), choices=[f" {LETTERS[j]}" for j in range(len(_as_list(r["choices"])))],
               group=r["subject"]) for i, r in enumerate(test)]


# ---------------------------------------------------------------- GSM8K
GSM8K_COT = [  # Wei et al. 2022, "Chain-of-Thought Prompting Elicits Reasoning", appendix table 20 (question, answer)
    (("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are "
      "done, there will be 21 trees. How many trees did the grove workers plant today?"),
     ("There are 15 trees originally. Then there were 21 trees after some more were planted. So there must "
      "have been 21 - 15 = 6. The answer is 6.")),
    (("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?"),
     ("There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.")),
    (("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in "
      "total?"),
     ("Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After "
      "eating 35, they had 74 - 35 = 39. The answer is 39.")),
    (("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops"
      " did Jason give to Denny?"),
     ("Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12"
      " = 8. The answer is 8.")),
    (("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he"
      " have now?"),
     ("Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 +"
      " 4 = 9. The answer is 9.")),
    (("There were nine computers in the server room. Five more computers were installed each day, from "
      "monday to thursday. How many computers are now in the server room?"),
     ("There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
      "computers were added. 9 + 20 is 29. The answer is 29.")),
    (("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many"
      " golf balls did he have at the end of wednesday?"),
     ("Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 "
      "more, he had 35 - 2 = 33 golf balls. The answer is 33.")),
    (("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?"),
     ("Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 "
      "dollars left. 23 - 15 is 8. The answer is 8.")),
]


def _gsm8k(p: Protocol) -> list[Sample]:
    prefix = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in GSM8K_COT[: p.shots])
    return [Sample(id=f"gsm8k/{i}", context=f"{prefix}Q: {r['question']}\nA:", target=[str(r["final"])])
            for i, r in enumerate(read_rows("gsm8k/test.jsonl.gz"))]


# ---------------------------------------------------------------- HumanEval
def _humaneval(p: Protocol) -> list[Sample]:
    return [Sample(id=r["task_id"], context=r["prompt"], target=f"{r['test']}\n\ncheck({r['entry_point']})\n",
               meta={"entry_point": r["entry_point"]})
            for r in read_rows("humaneval/HumanEval.jsonl.gz")]


# ---------------------------------------------------------------- BBH
BBH_TASKS = sorted(p.name.removesuffix(".jsonl.gz") for p in (BUILTIN_DIR / "bbh").glob("*.jsonl.gz"))


def bbh_prompt(task: str, shots: int) -> str:
    """The task description plus its first `shots` CoT exemplars, from `bbh/cot-prompts/<task>.txt`."""
    text = builtin_path(f"bbh/cot-prompts/{task}.txt").read_text(encoding="utf-8")
    body = text.split("-----\n", 1)[1].strip()
    description, *exemplars = body.split("\n\nQ: ")
    return "\n\n".join([description, *(f"Q: {e.strip()}" for e in exemplars[:shots])]) + "\n\n"


def _bbh(p: Protocol) -> list[Sample]:
    out = []
    for task in BBH_TASKS:
        prefix = bbh_prompt(task, p.shots)
        out += [Sample(id=f"bbh/{task}/{i}", context=f"{prefix}Q: {r['input']}\nA: Let's think step by step.",
                   target=[r["target"]], group=task)
            for i, r in enumerate(read_rows(f"bbh/{task}.jsonl.gz"))]
    return out


# ---------------------------------------------------------------- open-domain QA
def _nq_open(p: Protocol) -> list[Sample]:
    rows = list(read_rows("nq_open/dev.jsonl.gz"))
    # NQ-open's train split is not vendored: exemplars come from the end of dev and are left out of scoring
    shots, rows = (rows[-p.shots:], rows[: -p.shots]) if p.shots else ([], rows)
    prefix = "".join(f"Q: {r['question']}?\nA: {_as_list(r['answers'])[0]}\n\n" for r in shots)
    return [Sample(id=f"nq_open/{i}", context=f"{prefix}Q: {r['question']}?\nA:", target=_as_list(r["answers"]))
            for i, r in enumerate(rows)]


TRIVIAQA_HUB = "mandarjoshi/trivia_qa"


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _triviaqa(p: Protocol) -> list[Sample]:
    """TriviaQA rc.nocontext: validation items scored, exemplars from train (as lm-eval does)."""
    if not _hub_reachable():
        raise RuntimeError(f"task 'triviaqa' needs the Hugging Face hub dataset {TRIVIAQA_HUB!r} (config "
                       "rc.nocontext), which is not vendored and the hub is not reachable from here; run it "
                       "where the hub is reachable, or download it there with "
                       f"`datasets.load_dataset('{TRIVIAQA_HUB}', 'rc.nocontext')` and set HF_DATASETS_OFFLINE=1")
    from datasets import load_dataset

    val = load_dataset(TRIVIAQA_HUB, "rc.nocontext", split="validation")
    train = load_dataset(TRIVIAQA_HUB, "rc.nocontext", split=f"train[:{max(p.shots, 1)}]")
    prefix = "".join(f"Question: {r['question']}?\nAnswer: {r['answer']['value']}\n\n" for r in train.select(range(p.shots)))
    return [Sample(id=f"triviaqa/{r['question_id']}", context=f"{prefix}Question: {r['question']}?\nAnswer:",
               target=list(r["answer"]["aliases"])) for r in val]


# ---------------------------------------------------------------- sentiment
SENTIMENT_LABELS = ("neutral", "negative", "positive")


def sentiment_prompt(text: str) -> str:
    return f"Sentence: {text}\nSentiment (neutral, negative or positive):"


def _sentiment(p: Protocol) -> list[Sample]:
    rows = list(read_rows("financial_phrasebank/allagree.jsonl.gz"))
    # exemplars: the first rows, one label after another, left out of scoring
    shots: list[dict] = []
    for i in range(p.shots):
        want = SENTIMENT_LABELS[i % len(SENTIMENT_LABELS)]
        shots.append(next(r for r in rows if r["label"] == want and r not in shots))
    prefix = "".join(f"{sentiment_prompt(r['text'])} {r['label']}\n\n" for r in shots)
    return [Sample(id=f"sentiment/{i}", context=prefix + sentiment_prompt(r["text"]),
               target=SENTIMENT_LABELS.index(r["label"]), choices=[f" {lab}" for lab in SENTIMENT_LABELS],
               group=r["label"], meta={"text": r["text"], "label": r["label"]})
            for i, r in enumerate(rows) if r not in shots]


BUILTIN_TASKS: tuple[Task, ...] = (
    Task("mmlu", "builtin:mmlu (hendrycks/test)", "multiple_choice", "acc", 5, _mmlu, max_shots=5,
          description="57 subjects, 4-way multiple choice; micro and macro over subjects", license="MIT"),
    Task("gsm8k", "builtin:gsm8k/test (openai/grade-school-math)", "generate", "number_match", 8, _gsm8k,
          description="grade-school maths, chain of thought, final number", license="MIT", max_shots=8,
          stop=("Q:", "\n\n\n", "<|im_end|>", "</s>"), extract="number"),
    Task("humaneval", "builtin:humaneval (openai/human-eval)", "code", "pass@1", 0, _humaneval, max_shots=0,
          description="164 Python functions, pass@1 in the sandbox", license="MIT", max_new_tokens=384,
          stop=("\nclass", "\ndef", "\n#", "\nif", "\nprint")),
    Task("bbh", "builtin:bbh (suzgunmirac/BIG-Bench-Hard)", "generate", "exact_match_raw", 3, _bbh,
          description="27 BIG-Bench Hard tasks, chain of thought", license="MIT", max_shots=3,
          stop=("\n\nQ:", "Q:", "<|im_end|>"), extract="answer_is", average="macro"),
    Task("nq_open", "builtin:nq_open/dev (google-research-datasets/natural-questions)", "generate",
          "exact_match", 1, _nq_open, description="open-domain questions, exact match against any answer",
          license="CC BY-SA 3.0", stop=("\n", ".", ","), max_new_tokens=32),
    Task("triviaqa", f"hub:{TRIVIAQA_HUB} (rc.nocontext)", "generate", "exact_match", 1, _triviaqa,
          description="trivia questions, exact match against any alias (needs the hub)", license="Apache-2.0",
          stop=("\n", ".", ","), max_new_tokens=32),
    Task("sentiment", "builtin:financial_phrasebank/allagree (Malo et al. 2014)", "classify", "acc", 0,
          _sentiment, description="financial news sentiment: neutral / negative / positive",
          license="CC BY-NC-SA 3.0", average="micro"),
)
