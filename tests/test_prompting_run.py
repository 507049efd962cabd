"""Running a classification task with a PromptSpec on the tiny model: constrained and generate modes,
Russian input end to end, and the checks on bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from adaptlab.data.records import Classification
from adaptlab.eval.kinds import parse_choice
from adaptlab.models import generation, tiny_llama
from adaptlab.prompting.run import build_prompts, run_prompt
from adaptlab.prompting.spec import PromptSpec, load_spec
from adaptlab.prompting.tasks import GENERIC_SPEC, load_task, task_from_records

EXAMPLES = Path(__file__).parent.parent / "examples"
RU_RECORDS = [
    Classification("Выручка компании выросла на 20 % за квартал.", "positive"),
    Classification("Чистая прибыль увеличилась вдвое по сравнению с прошлым годом.", "positive"),
    Classification("Компания объявила о крупных убытках и сокращении штата.", "negative"),
    Classification("Продажи упали на треть, акции подешевели.", "negative"),
    Classification("Годовое собрание акционеров пройдёт в Хельсинки в марте.", "neutral"),
    Classification("Компания сменила адрес головного офиса.", "neutral"),
    Classification("Операционная прибыль снизилась до 3 млн евро.", "negative"),
    Classification("Заказы выросли, прогноз на год повышен.", "positive"),
    Classification("Отчёт будет опубликован 5 мая.", "neutral"),
    Classification("Совет директоров переизбран в прежнем составе.", "neutral"),
]


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama()


@pytest.fixture(scope="module")
def en_task():
    words = {"positive": "profit rose sharply", "negative": "loss widened badly", "neutral": "meeting held in May"}
    records = [Classification(f"{words[lb]} item {i}", lb) for i in range(8) for lb in words]
    return task_from_records("toy", records, GENERIC_SPEC, ["neutral", "negative", "positive"])


def _reference_loglik(model, tok, context: str, continuation: str) -> float:
    """log p(continuation | context) by one plain forward pass, independent of the eval scorer.

    As in lm-evaluation-harness, the context's trailing whitespace (the template's newline after
    `assistant`) moves to the continuation; it adds the same term to every label."""
    stripped = context.rstrip()
    ctx, whole = tok.encode(stripped), tok.encode(context + continuation)
    assert whole[: len(ctx)] == ctx
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), -1)
    return sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))


def test_constrained_picks_the_most_likely_label(tiny, en_task):
    model, tok = tiny
    spec = GENERIC_SPEC.model_copy(update={"shots": 2})
    result = run_prompt(model, tok, en_task, spec, limit=4)
    assert result.mode == "constrained" and result.n == 4 and result.valid == 1.0
    assert result.components == ["role", "instruction", "steps", "delimiters", "structure"] and result.shots == 2
    prompts = build_prompts(tok, en_task, spec, en_task.items[:4])
    for p, prompt in zip(result.predictions, prompts):
        ref = {lb: _reference_loglik(model, tok, prompt, lb) for lb in en_task.labels}
        assert p.pred == max(ref, key=ref.get)
        shown = {k: float(v) for k, v in re.findall(r"(\w+)=(-?[\d.]+)", p.output)}
        assert shown == pytest.approx(ref, abs=0.02)
    assert result.score == sum(p.pred == p.gold for p in result.predictions) / 4


def test_generate_mode_parses_the_label(tiny, en_task, monkeypatch):
    model, tok = tiny
    canned = iter([["It is positive.", "negative, not positive... final: neutral", "no idea", "NEGATIVE"]])
    monkeypatch.setattr(generation, "generate", lambda *a, **k: next(canned))
    result = run_prompt(model, tok, en_task, limit=4, mode="generate")
    assert result.mode == "generate"
    assert [p.pred for p in result.predictions] == ["positive", "neutral", None, "negative"]
    assert result.valid == 0.75
    assert result.score == sum(p.pred == p.gold for p in result.predictions) / 4


def test_generate_mode_runs_on_the_model(tiny, en_task):
    model, tok = tiny
    result = run_prompt(model, tok, en_task, limit=2, mode="generate", max_new_tokens=4)
    assert result.mode == "generate" and result.n == 2 and 0.0 <= result.valid <= 1.0
    assert all(p.pred in (None, *en_task.labels) and isinstance(p.output, str) for p in result.predictions)


@pytest.mark.parametrize(("text", "want"), [
    ("positive", "positive"),
    ("The answer: Negative.", "negative"),
    ("first neutral, then on reflection positive", "positive"),
    ("nonpositive positively", None),                 # whole words only
    ("Ответ: положительный", "positive"),
    ("НЕГАТИВНЫЙ", "negative"),
    ("", None),
])
def test_parse_choice(text, want):
    ru = {"нейтральный": "neutral", "негативный": "negative", "положительный": "positive"}
    assert parse_choice(text, ["neutral", "negative", "positive"]) == want or ru.get(parse_choice(text, list(ru))) == want


def test_russian_prompt_end_to_end(tiny):
    model, tok = tiny
    spec = load_spec(EXAMPLES / "prompt-sentiment-ru.yaml").model_copy(update={"shots": 2})
    task = task_from_records("ru-sentiment", RU_RECORDS, spec, ["neutral", "negative", "positive"])
    prompt = build_prompts(tok, task, spec, task.items[:1])[0]
    assert "Соотнеси следующий текст с одной из групп - нейтральный, негативный, положительный:" in prompt
    assert "## Задача" in prompt and f"«\n{task.items[0].text}\n»" in prompt
    assert tok.decode(tok.encode(prompt)) == prompt                      # Cyrillic survives tokenization
    answers_shown = re.findall(r"<\|im_start\|>assistant\n(.*?)<\|im_end\|>", prompt)
    assert len(answers_shown) == 2 and set(answers_shown) <= {"нейтральный", "негативный", "положительный"}
    result = run_prompt(model, tok, task, spec)
    assert result.n == len(task.items) and result.valid == 1.0
    assert all(p.pred in task.labels for p in result.predictions)
    assert all(set(re.findall(r"(\w+)=", p.output)) == {"нейтральный", "негативный", "положительный"}
               for p in result.predictions)


def test_bad_input_is_a_clear_error(tiny, en_task):
    model, tok = tiny
    with pytest.raises(ValueError, match="choose one of: constrained, generate"):
        run_prompt(model, tok, en_task, mode="vote")
    same = PromptSpec(labels={"neutral": "ok", "positive": "ok"})
    with pytest.raises(ValueError, match="share an answer word"):
        run_prompt(model, tok, en_task, same)
    alien = PromptSpec(shots=1, selection="fixed", exemplars=[{"text": "x", "label": "bullish"}])
    with pytest.raises(ValueError, match=r"exemplar labels \['bullish'\] are not labels"):
        run_prompt(model, tok, en_task, alien)
    with pytest.raises(ValueError, match="lists only 1 exemplars"):
        run_prompt(model, tok, en_task, alien.model_copy(update={"shots": 2}))


def test_sentiment_task_comes_from_the_eval_registry():
    task = load_task("sentiment")
    assert task.labels == ["neutral", "negative", "positive"]
    assert len(task.items) + len(task.pool) == 2259     # 2,264 rows, 5 sentences twice: kept once
    assert not {r.text for r in task.items} & {r.text for r in task.pool}
    with pytest.raises(ValueError, match="unknown task 'nope'.*sentiment"):
        load_task("nope")
