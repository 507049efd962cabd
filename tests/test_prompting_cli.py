"""`adaptlab prompt` and `adaptlab prompt ablate` end to end on a tiny model saved to disk."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.models import tiny_llama

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("prompt_cli")
    model, tok = tiny_llama()
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    rows = [{"text": f"sentence number {i} about {'gains' if i % 2 else 'losses'}", "label": ["up", "down"][i % 2]}
            for i in range(20)]
    (root / "task.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def test_prompt_runs_and_writes_json(setup):
    out = setup / "result.json"
    res = runner.invoke(app, ["prompt", "--task", str(setup / "task.jsonl"), "--model", str(setup / "tiny"),
                              "--shots", "2", "--limit", "4", "--json", str(out), "--show-prompt"])
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.output and "constrained" in res.output and "<|im_start|>" in res.output
    data = json.loads(out.read_text())
    assert data["mode"] == "constrained" and data["n"] == 4 and data["shots"] == 2
    assert {p["pred"] for p in data["predictions"]} <= {"up", "down"}


def test_prompt_generate_mode_with_a_spec(setup):
    spec = setup / "spec.yaml"
    spec.write_text("instruction: Say {labels}.\ndelimiters: '|'\nshots: 1\nselection: fixed\n", encoding="utf-8")
    out = setup / "gen.json"
    res = runner.invoke(app, ["prompt", "--task", str(setup / "task.jsonl"), "--model", str(setup / "tiny"),
                              "--spec", str(spec), "--mode", "generate", "--limit", "2", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["mode"] == "generate" and data["components"] == ["instruction", "delimiters"]
    assert data["selection"] == "fixed"


def test_ablate_prints_table_and_plot(setup):
    png, out = setup / "abl.png", setup / "abl.json"
    res = runner.invoke(app, ["prompt", "ablate", "--task", str(setup / "task.jsonl"), "--model",
                              str(setup / "tiny"), "--shots", "1", "--limit", "2", "--plot", str(png),
                              "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "full - without" in res.output and "exemplars" in res.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert {e["component"] for e in json.loads(out.read_text())["effects"]} == {
        "role", "instruction", "steps", "delimiters", "structure", "exemplars"}


@pytest.mark.parametrize(("args", "message"), [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--task", "sentiment", "--mode", "vote"], "not one of: constrained, generate"),
    (["--task", "sentiment", "--selection", "best"], "not one of: fixed, random, similarity"),
    ([], "--task is required"),
])
def test_bad_options_exit_with_a_clear_message(args, message):
    res = runner.invoke(app, ["prompt", *args, "--limit", "1"])
    assert res.exit_code == 2 and message in " ".join(res.output.split())


def test_bad_spec_names_the_field(setup):
    spec = setup / "bad.yaml"
    spec.write_text("shots: many\n", encoding="utf-8")
    res = runner.invoke(app, ["prompt", "--task", "sentiment", "--spec", str(spec)])
    assert res.exit_code == 2 and "field 'shots'" in res.output


def test_help_explains_both_commands():
    res = runner.invoke(app, ["prompt", "--help"])
    assert res.exit_code == 0 and "ablate" in res.output and "constrained" in res.output
    res = runner.invoke(app, ["prompt", "ablate", "--help"])
    assert res.exit_code == 0 and "Leave-one-out" in res.output and "--plot" in res.output
