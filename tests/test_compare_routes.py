"""compare's rag, dpo and rloo routes on the tiny random model: a matrix with every kind completes, each row
filled or saying why it is skipped; a rag cell's score is evaluate_task with sources_context on the same items;
the task reward, derived pairs and the data each objective trains on."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.compare.recipe import CompareConfig, RouteSpec, TaskSpec
from adaptlab.compare.reward import task_score
from adaptlab.compare.routes import NO_CORPUS, NO_PREFERENCES, skip_reason, training_keys
from adaptlab.compare.taskdata import derived_pairs, write_task
from adaptlab.data.records import Classification
from adaptlab.train.rewards import load_reward
from tests.conftest import write_jsonl

LABELS = ["negative", "neutral", "positive"]
ROUTES = [{"name": "rag", "rag": {"k": 1, "chunk_size": 64, "overlap": 8}},     # prompting and sft: test_compare_run
          {"name": "dpo", "method": {"name": "lora", "r": 2}, "objective": "dpo", "train": {"dpo": {"beta": 0.2}}},
          {"name": "rloo", "method": {"name": "lora", "r": 2}, "objective": "rloo",
           "train": {"rloo": {"k": 2, "max_new_tokens": 3}}}]


def _recipe(tiny_dir, out, task, routes):
    path = out / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "model": str(tiny_dir), "task": {"test_size": 12, "train_limit": 48, **task}, "routes": routes,
        "budget": "20s", "warmup_steps": 1, "train": {"seq_len": 128, "batch_size": 2, "optim": {"warmup_steps": 0}},
        "measure": {"train_eval": 0, "curve_points": 0, "mmlu_items": 0, "text_passages": 0},
        "output_dir": str(out / "run")}))
    return path


@pytest.fixture(scope="module")
def run(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare-routes")
    docs = out / "corpus"
    docs.mkdir()
    (docs / "terms.md").write_text("# Terms\n\nA profit warning is bad news for shareholders. Record sales are "
                                   "good news. A change of auditor is usually neutral news.\n")
    (docs / "notes.txt").write_text("Layoffs and losses are negative for a company. Dividends rise with profits.\n")
    path = _recipe(tiny_dir, out, {"corpus": str(docs), "preferences_from_labels": True}, ROUTES)
    r = CliRunner().invoke(app, ["compare", str(path)])
    assert r.exit_code == 0, r.output
    return out / "run"


def _records(run):
    return {p.parent.name: json.loads(p.read_text()) for p in (run / "cells").glob("*/record.json")}


def test_rag_dpo_and_rloo_routes_fill_their_rows(run):
    recs = _records(run)
    assert {k: v["status"] for k, v in recs.items()} == {f"{r['name']}-s0": "ok" for r in ROUTES}
    rag, dpo, rloo = recs["rag-s0"], recs["dpo-s0"], recs["rloo-s0"]
    assert rag["kind"] == "rag" and rag["test"]["n"] == 12 and rag["trainable_params"] == 0
    assert rag["rag"]["chunks"] >= 2 and rag["rag"]["index_build_s"] > 0
    assert rag["artifact_bytes"] == rag["rag"]["index_bytes"] > 0
    for rec, objective in ((dpo, "dpo"), (rloo, "rloo")):
        assert rec["objective"] == objective and rec["steps"] >= 1 and rec["tokens"] > 0
        assert 0 < rec["trainable_params"] < rec["total_params"] and rec["artifact_bytes"] > 0
    plan = json.loads((run / "plan.json").read_text())
    assert set(plan["steps"]) == {"dpo", "rloo"} and plan["speeds"]["dpo"]["step_s"] > 0   # each got its share
    cfg = json.loads((run / "cells" / "dpo-s0" / "spec.json").read_text())["train"]
    assert cfg["objective"] == "dpo" and cfg["dpo"]["beta"] == 0.2 and cfg["data"]["train"].endswith("preferences.jsonl")
    cfg = json.loads((run / "cells" / "rloo-s0" / "spec.json").read_text())["train"]
    assert cfg["rloo"]["reward"] == f"task:{run / 'data' / 'rewards.jsonl'}"
    md = (run / "report.md").read_text()
    assert all(f"| {r['name']} | ok |" in md for r in ROUTES)
    assert "RAG: retriever and deployment cost" in md and "k=1" in md


def test_rag_cell_score_is_evaluate_task_with_sources_context(run, tiny):
    from adaptlab.compare.rag import store_path, with_questions
    from adaptlab.eval.catalog import get_task
    from adaptlab.eval.runner import evaluate_task
    from adaptlab.rag.answer import retrieve, sources_context
    from adaptlab.rag.embed import Embedder
    from adaptlab.rag.store import open_store

    spec = json.loads((run / "cells" / "rag-s0" / "spec.json").read_text())
    assert spec["store"] == str(store_path(run / "rag", spec["corpus"], spec["rag"]))
    model, tok = tiny
    task = get_task(str(run / "data" / "test.yaml"))
    samples = task.build(task.protocol())
    store, emb = open_store(spec["store"]), Embedder()
    try:
        hits = dict(zip([s.id for s in samples], retrieve(store, emb, [s.context for s in samples], 1)))
    finally:
        store.close()
    protocol = task.protocol(chat_template=True, seed=0)
    result = evaluate_task(model, tok, with_questions(task), protocol, sources_context(tok, hits, "cite"))
    rec = _records(run)["rag-s0"]
    assert result.score == pytest.approx(rec["test"]["score"]) and result.n == rec["test"]["n"]


def test_routes_the_task_cannot_feed_say_why(tiny_dir, tmp_path):
    routes = [r for r in ROUTES if r["name"] in ("rag", "dpo")]
    r = CliRunner().invoke(app, ["compare", str(_recipe(tiny_dir, tmp_path, {}, routes))])
    assert r.exit_code == 0, r.output
    recs = _records(tmp_path / "run")
    assert recs["rag-s0"]["status"] == recs["dpo-s0"]["status"] == "skipped"
    assert recs["rag-s0"]["reason"] == NO_CORPUS == "the task has no corpus (set task.corpus)"
    assert recs["dpo-s0"]["reason"] == NO_PREFERENCES
    md = (tmp_path / "run" / "report.md").read_text()
    assert "| rag | skipped | the task has no corpus (set task.corpus) |" in md


def test_task_reward_scores_the_label_a_completion_names(tmp_path):
    assert task_score("Positive.", "positive", LABELS) == 1.0
    assert task_score("negative", "positive", LABELS) == 0.0
    assert task_score("not negative but positive", "positive", LABELS) == 1.0     # the last label named
    assert task_score("I cannot tell", "positive", LABELS) == 0.0
    assert task_score("The answer is Paris.", "Paris", None) == 1.0
    refs = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "p", "answer": "neutral", "choices": LABELS}])
    reward = load_reward(f"task:{refs}")                    # through train/rewards.py's registry
    assert reward(["p", "p"], ["neutral", "positive"]) == [1.0, 0.0]
    with pytest.raises(KeyError, match="no reference answer"):
        reward(["other"], ["neutral"])


def test_derived_pairs_prefer_the_gold_label_over_a_seeded_wrong_one():
    train = [Classification(f"t{i}", LABELS[i % 3]) for i in range(30)]
    pairs = derived_pairs(train, LABELS, "S: {text}")
    assert [p["chosen"] for p in pairs] == [r.label for r in train]
    assert all(p["rejected"] in LABELS and p["rejected"] != p["chosen"] for p in pairs)
    assert len({p["rejected"] for p in pairs}) == 3 and pairs == derived_pairs(train, LABELS, "S: {text}")
    assert pairs[0]["prompt"] == "S: t0"


def test_each_objective_trains_on_what_the_task_has(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": f"s {i}", "label": LABELS[i % 3]} for i in range(40)])
    plain = write_task(TaskSpec(data=str(data), test_size=10), [0], 0, tmp_path / "a")
    derived = write_task(TaskSpec(data=str(data), test_size=10, preferences_from_labels=True), [0], 0, tmp_path / "b")
    dpo = RouteSpec(name="dpo", method={"name": "lora"}, objective="dpo")
    rloo = RouteSpec(name="rloo", method={"name": "lora"}, objective="rloo")
    assert skip_reason(dpo, plain) == NO_PREFERENCES and skip_reason(dpo, derived) is None
    assert skip_reason(RouteSpec(name="rag", rag={}), plain) == NO_CORPUS
    keys = training_keys(dpo, derived, steps=5, batch=4)
    assert keys["objective"] == "dpo" and keys["data"] == {"train": derived.preferences, "limit": 20, "eval_fraction": 0}
    keys = training_keys(rloo, plain, steps=5, batch=4)
    assert keys["rloo"]["reward"] == f"task:{plain.rewards}" and keys["data"]["train"] == str(plain.train)
    rows = [json.loads(line) for line in plain.rewards.read_text().splitlines()]
    assert len(rows) == plain.n_train and rows[0]["choices"] == LABELS and rows[0]["answer"] in LABELS


def test_recipe_errors_name_the_route():
    with pytest.raises(ValueError, match="route r: a rag route takes no method"):
        RouteSpec(name="r", rag={}, method={"name": "lora"})
    with pytest.raises(ValueError, match="objective dpo trains: give a method"):
        RouteSpec(name="d", objective="dpo")
    with pytest.raises(ValueError, match="not both"):
        TaskSpec(preferences="p.jsonl", preferences_from_labels=True)
    with pytest.raises(ValueError, match="unknown compare objective 'ppo'; choose one of: dpo, rloo, sft"):
        training_keys(RouteSpec(name="p", method={"name": "lora"}, objective="ppo"), None, 1, 1)
    assert CompareConfig(task={"corpus": "docs"}, routes=[{"name": "rag", "rag": {}}]).task.corpus == ["docs"]
