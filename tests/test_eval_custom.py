"""Custom YAML tasks: the shipped examples load and run; malformed files name the bad field."""

from pathlib import Path

import pytest

from adaptlab.eval.catalog import get_task
from adaptlab.eval.custom import load_custom_task
from adaptlab.eval.runner import evaluate_task
from adaptlab.models import tiny_llama

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_generate_task_builds():
    task = get_task(str(EXAMPLES / "eval-capitals.yaml"))
    samples = task.build(task.protocol())
    assert task.kind == "generate" and len(samples) == 10
    assert samples[0].context.startswith("Q: What is the capital of France?\nA: Paris\n\nQ: What is the capital of Japan?")
    assert ["New Delhi", "Delhi"] in [s.target for s in samples]
    assert samples[0].group == "Europe"


def test_example_classify_task_runs_on_tiny_model():
    model, tok = tiny_llama(seed=0)
    task = get_task(str(EXAMPLES / "eval-continent.yaml"))
    r = evaluate_task(model, tok, task, task.protocol(), log_samples=True)
    assert r.n == 12 and r.samples[0]["target"] == 0 and len(r.samples[0]["loglikelihoods"]) == 5


def _write(tmp_path, text, data='{"q": "1+1", "a": "2"}\n{"q": "2+2", "a": "4"}\n'):
    (tmp_path / "d.jsonl").write_text(data)
    (tmp_path / "t.yaml").write_text(text)
    return tmp_path / "t.yaml"


BASE = "name: t\ndata: d.jsonl\nprompt: 'Q: {q}\\nA:'\nanswer: a\n"


@pytest.mark.parametrize("extra,field", [
    ("kind: regression\n", "kind"),
    ("kind: generate\nshots: -1\n", "shots"),
    ("kind: generate\nmetric: bleu\n", "metric"),
    ("kind: multiple_choice\n", "choices"),
    ("kind: classify\n", "labels"),
    ("kind: generate\ntemprature: 0.5\n", "temprature"),
])
def test_malformed_yaml_names_the_field(tmp_path, extra, field):
    path = _write(tmp_path, BASE + extra)
    with pytest.raises(ValueError) as e:
        load_custom_task(path)
    assert field in str(e.value) and str(path) in str(e.value)


def test_missing_required_field(tmp_path):
    path = _write(tmp_path, "name: t\ndata: d.jsonl\nkind: generate\nanswer: a\n")
    with pytest.raises(ValueError, match="'prompt'"):
        load_custom_task(path)


def test_template_column_missing_names_field_and_row(tmp_path):
    path = _write(tmp_path, BASE.replace("{q}", "{question}") + "kind: generate\n")
    task = load_custom_task(path)
    with pytest.raises(ValueError, match="field 'prompt'.*question.*row 1"):
        task.build(task.protocol())


def test_bad_json_line_names_file_and_line(tmp_path):
    path = _write(tmp_path, BASE + "kind: generate\n", data='{"q": "1", "a": "1"}\n{oops\n')
    task = load_custom_task(path)
    with pytest.raises(ValueError, match=r"d.jsonl:2"):
        task.build(task.protocol())
