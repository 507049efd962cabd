"""report.html in a real headless browser: every route's row and every plot appear, offline."""

from pathlib import Path

from adaptlab.compare.report import write_report
from tests.browser import page  # noqa: F401
from tests.test_compare_units import _record

ROUTES = ["zero-shot", "few-shot-3", "full", "lora", "qlora", "dora"]


def _run() -> tuple[dict, list[dict]]:
    recipe = {"model": "smollm2-135m", "share": "time", "task": {"name": "sentiment", "data": "financial-phrasebank"},
              "routes": [{"name": n} for n in ROUTES]}
    plan = {"steps": {"full": 10, "lora": 30, "qlora": 25}, "training_s": 120.0,
            "speeds": {n: {"step_s": 1.0, "tokens_per_step": 900} for n in ("full", "lora", "qlora")}}
    records = [
        _record("zero-shot", None, 40.0, kind="prompt", forgetting={"mmlu_acc": 30.0, "text_ce": 2.0}),
        _record("few-shot-3", None, 55.0, kind="prompt"),
        _record("full", "full", 80.0, trainable_params=1e8, peak_memory_mb=5000.0, curve=[[5, 60.0], [10, 80.0]]),
        _record("lora", "lora", 78.0, trainable_params=2e6, curve=[[15, 70.0], [30, 78.0]]),
        _record("qlora", "qlora", 75.0, trainable_params=2e6, peak_memory_mb=900.0),
        {"route": "dora", "status": "failed", "error": "RuntimeError: out of memory", "kind": "train"}]
    return {"recipe": recipe, "budget_s": 300, "n_train": 2000, "n_test": 200, "test_carved": True,
            "elapsed_s": 290, "plan": plan}, records


def test_report_html_shows_every_route_and_plot(page, tmp_path):  # noqa: F811
    run, records = _run()
    paths = write_report(run, records, tmp_path)
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith(("file:", "data:"))
               else route.continue_())                                      # offline: nothing else may load
    page.goto(Path(paths["report.html"]).as_uri())
    rows = page.locator("table").first.locator("tbody tr")
    assert [rows.nth(i).get_attribute("data-route") for i in range(rows.count())] == ROUTES
    assert "out of memory" in page.locator('tr[data-route="dora"]').inner_text()
    for name in ("metric_vs_params.png", "metric_vs_memory.png", "pareto.png", "time_per_route.png", "curves.png"):
        img = page.locator(f'img[data-plot="{name}"]')
        assert img.evaluate("i => i.complete && i.naturalWidth > 300"), name
    text = page.locator("body").inner_text()
    assert "PEFT matches full fine-tuning" in text and "Best overall" in text
