"""Task registry, builtin prompts, custom YAML tasks, protocol recording and the runner on a tiny model."""

import json

import pytest

from adaptlab.eval import builtin_tasks, kinds
from adaptlab.eval.catalog import TASKS, get_task
from adaptlab.eval.runner import aggregate, evaluate, evaluate_task
from adaptlab.eval.tasks import Protocol, Sample, Task, select
from adaptlab.models import tiny_llama
from adaptlab.registry import UnknownNameError


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=0)


def test_unknown_task_lists_valid_names():
    with pytest.raises(UnknownNameError) as e:
        get_task("mmlu_pro")
    for name in ["mmlu", "gsm8k", "humaneval", "bbh", "nq_open", "triviaqa", "sentiment"]:
        assert name in str(e.value)


def test_mmlu_prompt_matches_lm_eval_format():
    task = get_task("mmlu")
    samples = task.build(task.protocol())
    assert len(samples) == 14042 and len({s.group for s in samples}) == 57
    s = samples[0]
    assert s.context.startswith("The following are multiple choice questions (with answers) about abstract algebra.\n\n")
    assert s.context.count("\nAnswer:") == 6 and s.context.endswith("\nD. 6\nAnswer:")
    assert s.choices == [" A", " B", " C", " D"] and s.target == 1
    zero = task.build(task.protocol(shots=0))[0]
    assert zero.context.count("Answer:") == 1
    with pytest.raises(ValueError, match="at most 5"):
        task.protocol(shots=6)


def test_gsm8k_bbh_humaneval_prompts():
    g = get_task("gsm8k").build(get_task("gsm8k").protocol())[0]
    assert g.context.count("The answer is") == 8 and g.context.endswith("\nA:") and g.target == ["18"]
    b = get_task("bbh").build(get_task("bbh").protocol())
    assert len({s.group for s in b}) == 27 == len(builtin_tasks.BBH_TASKS)
    nav = next(s for s in b if s.group == "navigate")
    assert nav.context.count("\nQ: ") + nav.context.startswith("Q: ") == 4  # 3 exemplars + the item
    assert "canary" not in nav.context and nav.context.endswith("A: Let's think step by step.")
    h = get_task("humaneval").build(get_task("humaneval").protocol())
    assert len(h) == 164 and "check(has_close_elements)" in h[0].target


def test_sentiment_task_is_three_class():
    task = get_task("sentiment")
    samples = task.build(task.protocol(shots=3))
    assert samples[0].choices == [" neutral", " negative", " positive"]
    assert {s.target for s in samples} == {0, 1, 2} and len(samples) == 2264 - 3
    assert samples[0].context.count("Sentiment (") == 4


def test_triviaqa_offline_error_names_hub_dataset(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    task = get_task("triviaqa")
    with pytest.raises(RuntimeError, match="mandarjoshi/trivia_qa"):
        task.build(task.protocol())


def test_select_is_stratified_and_seeded():
    samples = [Sample(str(i), "", 0, group=str(i % 5)) for i in range(100)]
    a, b = select(samples, 10, 0), select(samples, 10, 0)
    assert [s.id for s in a] == [s.id for s in b] and len(a) == 10
    assert sorted(s.group for s in a) == sorted([str(g) for g in range(5)] * 2)
    assert [s.id for s in select(samples, 10, 1)] != [s.id for s in a]


@pytest.mark.parametrize("text,strict,expected", [
    ("5 + 4 = 9. The answer is 9.", True, "9"),
    ("5 + 4 = 9", True, None),
    ("5 + 4 = 9", False, "9"),
])
def test_number_extraction_strict_flexible(text, strict, expected):
    assert kinds.EXTRACTORS["number"](text, strict, []) == expected


def test_answer_is_extraction():
    assert kinds.EXTRACTORS["answer_is"]("step 1.\nSo the answer is (B).", True, []) == "(B)"
    assert kinds.EXTRACTORS["answer_is"]("no verdict\n] ]", False, []) == "] ]"
    assert kinds.METRICS["exact_match_raw"]("] ]", ["] ]"]) == 1.0
    assert kinds.METRICS["exact_match_raw"](") ]", ["] ]"]) == 0.0


def test_aggregate_micro_macro():
    scored = [kinds.Scored(Sample(str(i), "", 0, group=g), {"acc": v})
              for i, (g, v) in enumerate([("a", 1), ("a", 1), ("a", 1), ("b", 0)])]
    m, groups = aggregate(scored)
    assert m["acc"] == 75.0 and m["acc_macro"] == 50.0 and groups["b"]["acc"] == 0.0


def test_runner_records_protocol_and_samples(tiny):
    model, tok = tiny
    results = evaluate(model, tok, ["mmlu", "sentiment"], limit=6, seed=3, log_samples=True)
    r = results["mmlu"].to_dict()
    assert r["protocol"] == {"shots": 5, "chat_template": False, "extraction": "flexible", "average": "micro",
                             "limit": 6, "seed": 3, "samples": 1, "temperature": 0.0}
    assert r["n"] == 6 and len(r["samples"]) == 6 and "acc_macro" in r["metrics"]
    assert {"prompt", "output", "scores", "target"} <= r["samples"][0].keys()
    assert 0.0 <= r["score"] <= 100.0
    json.dumps(r)  # JSON-serialisable as written by the CLI
    assert results["sentiment"].to_dict()["protocol"]["shots"] == 0


def test_runner_gives_error_for_unavailable_task(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = tiny
    results = evaluate(model, tok, ["triviaqa"], limit=2)
    assert isinstance(results["triviaqa"], RuntimeError)


def test_generate_and_code_kinds_run(tiny):
    model, tok = tiny
    for name in ["gsm8k", "humaneval"]:
        task = get_task(name)
        task = type(task)(**{**task.__dict__, "max_new_tokens": 8})
        r = evaluate_task(model, tok, task, task.protocol(limit=2), log_samples=True)
        assert r.n == 2 and r.score == 0.0   # a random model solves nothing
        assert all(isinstance(s["output"], str) for s in r.samples)
    assert "bubblewrap" in r.extra["sandbox"]


def test_chat_template_wraps_prompts(tiny):
    model, tok = tiny
    task = get_task("sentiment")
    r = evaluate_task(model, tok, task, task.protocol(limit=2, chat_template=True), log_samples=True)
    assert r.samples[0]["prompt"].startswith("<|im_start|>") and r.protocol.chat_template


def test_registry_has_one_entry_per_builtin():
    assert {"mmlu", "gsm8k", "humaneval", "bbh", "nq_open", "triviaqa", "sentiment"} <= set(TASKS)
    for t in TASKS.values():
        assert t.kind in kinds.KINDS and (t.metric in kinds.METRICS or t.metric in kinds.CHOICE_METRICS or t.metric == "pass@1")


def test_protocol_overrides_ignore_none():
    p = get_task("bbh").protocol(shots=None, extraction="strict", average=None)
    assert p == Protocol(shots=3, extraction="strict", average="macro")


def _code_task():
    build = lambda p: [Sample(id=f"t{i}", context="def f():\n", target="assert f() == 1\n") for i in range(3)]
    return Task("toy_code", "test", "code", "pass@1", 0, build, max_new_tokens=8)


def test_pass_at_k_counts_every_sampled_program(tiny, monkeypatch):
    """Half of each item's completions are right: pass@1 = 1/2 and pass@10 = 1 - C(5,10)/C(10,10) = 1
    by the unbiased estimator; the programs really run in the sandbox."""
    calls = {}

    def fake_generate(model, tokenizer, prompts, temperature=0.0, **kw):
        calls["prompts"], calls["temperature"] = len(prompts), temperature
        return ["    return 1" if i % 2 else "    return 2" for i in range(len(prompts))]

    monkeypatch.setattr(kinds.generation, "generate", fake_generate)
    model, tok = tiny
    task = _code_task()
    r = evaluate_task(model, tok, task, task.protocol(samples=10, temperature=0.8), log_samples=True)
    assert calls == {"prompts": 30, "temperature": 0.8}
    assert r.metrics["pass@1"] == pytest.approx(50.0) and r.metrics["pass@10"] == pytest.approx(100.0)
    assert "pass@100" not in r.metrics
    assert r.samples[0]["passed"] == 5 and len(r.samples[0]["completions"]) == 10
    r4 = evaluate_task(model, tok, task, task.protocol(samples=4, temperature=0.8))
    assert set(r4.metrics) == {"pass@1"} and r4.score == pytest.approx(50.0)


def test_sampled_completions_differ_and_greedy_needs_one_sample(tiny):
    model, tok = tiny
    task = _code_task()
    r = evaluate_task(model, tok, task, task.protocol(limit=1, samples=4, temperature=1.0, seed=3), log_samples=True)
    completions = r.samples[0]["completions"]
    assert len(completions) == 4 and len(set(completions)) > 1   # a random model at T=1 rarely repeats itself
    again = evaluate_task(model, tok, task, task.protocol(limit=1, samples=4, temperature=1.0, seed=3), log_samples=True)
    assert again.samples[0]["completions"] == completions          # seeded
    with pytest.raises(ValueError, match="temperature"):
        task.protocol(samples=2)
