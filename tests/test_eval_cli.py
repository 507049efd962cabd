"""`adaptlab eval` end to end on a tiny model saved to disk: table, JSON with protocol, errors."""

import json

import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.models import tiny_llama


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    model, tok = tiny_llama(seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_eval_writes_json_with_protocol(tiny_dir, tmp_path):
    out = tmp_path / "res.json"
    r = CliRunner().invoke(app, ["eval", "--model", str(tiny_dir), "--tasks", "sentiment,mmlu", "--limit", "3",
                                 "--shots", "0", "--dtype", "fp32", "-o", str(out), "--log-samples"])
    assert r.exit_code == 0, r.output
    assert "sentiment" in r.output and "mmlu" in r.output
    assert "mmlu: 0-shot, chat off, flexible, micro, limit 3, seed 0" in r.output   # protocol beside every score
    data = json.loads(out.read_text())
    res = data["results"]["mmlu"]
    assert res["protocol"]["shots"] == 0 and res["protocol"]["limit"] == 3 and len(res["samples"]) == 3


def test_eval_suite_shows_published_and_unavailable(tiny_dir, tmp_path, monkeypatch):
    from adaptlab.eval import suite

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the same suite machinery on two cheap tasks, so the test stays fast
    monkeypatch.setitem(suite.SUITES, "mini", suite.Suite("mini", ("mmlu", "triviaqa"),
                                                          {"LLaMA 2 70B": {"mmlu": 68.9, "triviaqa": 85.0}}))
    out = tmp_path / "suite.json"
    r = CliRunner().invoke(app, ["eval", "--model", str(tiny_dir), "--suite", "mini", "--limit", "2",
                                 "--dtype", "fp32", "-o", str(out)], terminal_width=200, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "68.9" in r.output and "mandarjoshi/trivia_qa" in r.output.replace("\n", "")
    data = json.loads(out.read_text())
    assert "error" in data["results"]["triviaqa"] and data["published"]["LLaMA 2 70B"]["mmlu"] == 68.9


def test_table1_suite_lists_the_issue_numbers():
    from adaptlab.eval.suite import get_suite

    s = get_suite("table1")
    assert s.tasks == ("mmlu", "triviaqa", "nq_open", "gsm8k", "humaneval", "bbh")
    assert s.published["LLaMA 2 70B"] == {"mmlu": 68.9, "triviaqa": 85.0, "nq_open": 33.0, "gsm8k": 56.8,
                                          "humaneval": 29.9, "bbh": 51.2}
    assert s.published["GPT-4"]["humaneval"] == 67.0 and s.published["GPT-3.5"]["gsm8k"] == 57.1


def test_unknown_task_and_bad_yaml_exit_with_message(tmp_path):
    r = CliRunner().invoke(app, ["eval", "--tasks", "mmlu,nope"], terminal_width=200, env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "unknown task 'nope'" in r.output and "gsm8k" in r.output
    bad = tmp_path / "t.yaml"
    bad.write_text("name: t\ndata: d.jsonl\nkind: regression\nprompt: x\nanswer: a\n")
    r = CliRunner().invoke(app, ["eval", "--tasks", str(bad)], terminal_width=300, env={"COLUMNS": "300"})
    assert r.exit_code == 2 and "kind" in r.output


def test_user_errors_are_one_line_with_exit_code_2(tmp_path):
    """One helper for every command: no traceback, the same exit code for the same kind of mistake."""
    env = {"COLUMNS": "200"}
    cases = [(["eval", "--model", "no-such-model", "--tasks", "sentiment"], "unknown model 'no-such-model'"),
             (["eval", "--tasks", "sentiment", "--adapter", str(tmp_path)], "neither an adaptlab artifact"),
             (["prompt", "--task", "nope"], "unknown task 'nope'"),
             (["train", str(tmp_path / "missing.yaml")], "does not exist"),
             (["merge", str(tmp_path), "--out", str(tmp_path / "m")], str(tmp_path))]
    for args, message in cases:
        r = CliRunner().invoke(app, args, env=env)
        assert r.exit_code == 2, (args, r.output)
        assert message in " ".join(r.output.split()) and "Traceback" not in r.output, (args, r.output)
