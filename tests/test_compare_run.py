"""`adaptlab compare` end to end on the tiny random model: cells in their own processes, cache and
resume, --only, a route that cannot run, a cell that fails, the report's files and --merge."""

import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.compare.runner import _failure, run_child


@pytest.fixture(scope="module")
def recipe(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    path = out / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "model": str(tiny_dir), "task": {"test_size": 12, "train_limit": 48},
        "routes": [{"name": "zero-shot"}, {"name": "few-shot-2", "shots": 2},
                   {"name": "lora", "method": {"name": "lora", "r": 2}},
                   {"name": "huge-rank", "method": {"name": "lora", "r": 100000}}],
        "budget": "30s", "warmup_steps": 1,
        "train": {"seq_len": 128, "batch_size": 4, "optim": {"warmup_steps": 0}},
        "measure": {"train_eval": 4, "curve_points": 1, "curve_items": 4, "mmlu_items": 3, "text_passages": 2},
        "output_dir": str(out / "run")}))
    return path, out / "run"


def _records(run):
    return {p.parent.name: json.loads(p.read_text()) for p in (run / "cells").glob("*/record.json")}


def test_compare_runs_every_cell_and_writes_the_report(recipe):
    path, run = recipe
    r = CliRunner().invoke(app, ["compare", str(path)])
    assert r.exit_code == 0, r.output
    recs = _records(run)
    assert set(recs) == {"zero-shot-s0", "few-shot-2-s0", "lora-s0", "huge-rank-s0"}
    for cell in ("zero-shot-s0", "few-shot-2-s0", "lora-s0"):   # not a terminal: one line per cell
        assert re.search(rf"\] {cell}: started", r.output), r.output
    assert "warm-up" not in r.output      # share: time: each training cell times its own first steps
    assert re.search(r"\] lora-s0: ok score \d", r.output) and re.search(r"\] huge-rank-s0: skipped: .*rank", r.output)
    lora, zero = recs["lora-s0"], recs["zero-shot-s0"]
    assert lora["status"] == "ok" and lora["steps"] >= 1 and lora["tokens"] > 0
    assert lora["test"]["n"] == zero["test"]["n"] == recs["few-shot-2-s0"]["test"]["n"] == 12
    lo, hi = lora["test"]["interval"]
    assert lo <= lora["test"]["score"] <= hi
    assert 0 < lora["trainable_params"] < lora["total_params"] and lora["artifact_bytes"] > 0
    assert lora["peak_memory_mb"] > 100 and lora["load_time_s"] > 0 and len(lora["curve"]) == 1
    assert {"mmlu_acc", "text_ce"} <= set(lora["forgetting"]) and "train" in lora
    assert zero["trainable_params"] == 0 and "forgetting" in zero and "forgetting" not in recs["few-shot-2-s0"]
    assert recs["huge-rank-s0"]["status"] == "skipped" and "rank r=100000" in recs["huge-rank-s0"]["reason"]
    assert lora["versions"]["torch"] and lora["hardware"]["cores"]
    md = (run / "report.md").read_text()
    for route in ("zero-shot", "few-shot-2", "lora", "huge-rank"):
        assert f"| {route} |" in md
    assert "carved out" in md and "Recommendation" in md
    assert all((run / f).stat().st_size > 1000 for f in ("report.html", "pareto.png", "metric_vs_params.png"))


def test_a_cell_score_is_what_adaptlab_eval_gives_on_its_artifact(recipe, tmp_path):
    _, run = recipe
    lora, out = _records(run)["lora-s0"], tmp_path / "eval.json"
    test_task = json.loads((run / "run.json").read_text())["test_task"]
    r = CliRunner().invoke(app, ["eval", "--adapter", lora["artifact"], "--tasks", test_task, "--chat-template",
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert next(iter(json.loads(out.read_text())["results"].values()))["score"] == pytest.approx(lora["test"]["score"])


def test_rerun_uses_the_cache_and_only_reruns_the_named_route(recipe):
    path, run = recipe
    before = {k: v["config_hash"] for k, v in _records(run).items() if v["status"] == "ok"}
    mtimes = {k: (run / "cells" / k / "record.json").stat().st_mtime for k in before}
    r = CliRunner().invoke(app, ["compare", str(path), "--only", "few-shot-2"])
    assert r.exit_code == 0, r.output
    after = {k: (run / "cells" / k / "record.json").stat().st_mtime for k in before}
    assert after["zero-shot-s0"] == mtimes["zero-shot-s0"] and after["lora-s0"] == mtimes["lora-s0"]
    assert after["few-shot-2-s0"] > mtimes["few-shot-2-s0"]
    r = CliRunner().invoke(app, ["compare", str(path), "--only", "nope"])
    assert r.exit_code == 2 and "no such route" in r.output


def test_merge_puts_runs_into_one_report(recipe, tmp_path):
    _, run = recipe
    r = CliRunner().invoke(app, ["compare", "--merge", str(run), str(run), "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "report.md").read_text()
    assert "| lora | ok x2 |" in md


def test_a_failing_cell_reports_its_error(tmp_path):
    spec = {"kind": "train", "train": {"model": "no-such-model-dir"}, "measure": {"curve_points": 0},
            "out": str(tmp_path / "r.json")}
    status, stderr = run_child(spec,
                               tmp_path / "cell", lambda e: None, "broken")
    assert status != 0 and "no-such-model-dir" in _failure(status, stderr)
    assert _failure(-9, "") == "killed by the system (out of memory?)"


def test_bad_recipe_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [{name: a, methd: {name: lora}}]\n")
    r = CliRunner().invoke(app, ["compare", str(bad)])
    assert r.exit_code == 2 and "methd" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["compare", str(bad), "--budget", "soon"])
    assert r.exit_code == 2
