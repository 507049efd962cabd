"""The README's main command on the builtin model: `adaptlab compare examples/compare-sentiment.yaml
--budget quick` fills or explains every route's row within the budget plus 10%, and a trained cell's
score is what `adaptlab eval` gives on the same artifact."""

import json
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.compare.planner import parse_budget

RECIPE = Path(__file__).parent.parent / "examples" / "compare-sentiment.yaml"


@pytest.mark.slow
def test_quick_budget_fills_every_row_in_time_and_matches_eval(tmp_path):
    start = time.perf_counter()
    r = CliRunner().invoke(app, ["compare", str(RECIPE), "--budget", "quick", "-o", str(tmp_path)])
    wall = time.perf_counter() - start
    assert r.exit_code == 0, r.output
    recipe = yaml.safe_load(RECIPE.read_text())
    budget = parse_budget("quick", recipe["budgets"])
    assert wall <= 1.1 * budget, f"took {wall:.0f} s for a {budget:.0f} s budget"
    routes = [route["name"] for route in recipe["routes"]]
    records = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "cells").glob("*/record.json")}
    for route in routes:
        rec = records[f"{route}-s0"]
        assert rec["status"] == "ok" or rec.get("reason") or rec.get("error"), route
        if rec["status"] == "ok" and rec["kind"] == "train":    # a share beyond the least (the timed steps + 1)
            assert rec["steps"] > 3, (route, rec["steps"])
    md = (tmp_path / "report.md").read_text()
    assert all(f"| {route} |" in md for route in routes)

    lora = records["lora-s0"]
    out = tmp_path / "eval.json"
    run = json.loads((tmp_path / "run.json").read_text())
    r = CliRunner().invoke(app, ["eval", "--adapter", lora["artifact"], "--tasks", run["test_task"], "--chat-template",
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    score = next(iter(json.loads(out.read_text())["results"].values()))["score"]
    assert score == pytest.approx(lora["test"]["score"], abs=1e-6)
