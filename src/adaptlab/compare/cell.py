"""One cell of the compare matrix in its own process, so its peak memory is its own.

`run_spec(SPEC.json, conn)` is the process's whole life: the runner forks it from a fork server that
has already imported torch, transformers and peft (seconds saved per cell, nothing else shared). The
spec says what to do: `prompt` scores the base model with a prompt, `rag` with sources retrieved from the
task's corpus (compare/rag.py), `train` trains a route, reloads
its artifact as `adaptlab eval` would and measures it, `warmup` times a few steps of each training
route. Progress goes through `conn` as dicts; the record is written atomically to `spec["out"]`; stderr
goes to `stderr.log` beside the spec. Any exception ends the process with a non-zero status and its
traceback in that log, which the runner reports in the cell's row.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from adaptlab.atomic import write_json
from adaptlab.compare import measure
from adaptlab.compare.planner import Speed

Emit = Callable[[dict], None]


def _eval_progress(emit: Emit, phase: str):
    def factory(task: str, total: int):
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            emit({"event": "progress", "phase": phase, "done": done[0], "total": total})
        return advance
    return factory


def _footprint(model) -> dict:
    from adaptlab.methods.base import count_footprint

    fp = count_footprint(model)
    return {"trainable_params": fp.trainable_params, "total_params": fp.total_params,
            "trainable_share": fp.trainable_share}


def run_prompt(spec: dict, emit: Emit) -> dict:
    """The base model answering with a prompt (zero- or few-shot); the zero-shot cell also measures
    the base model's forgetting probe, the reference every fine-tuned cell is compared with."""
    from adaptlab.models import load_model

    start = time.perf_counter()
    loaded = load_model(spec["model"])
    load_s = time.perf_counter() - start
    test = measure.score_task(loaded.model, loaded.tokenizer, spec["task"], limit=spec["measure"]["eval_limit"],
                              progress=_eval_progress(emit, "eval"))
    record = {"test": test.as_dict(), "load_time_s": load_s, "eval_time_s": test.seconds, "artifact_bytes": 0,
              "steps": 0, "tokens": 0, "train_time_s": 0.0, **_footprint(loaded.model), "trainable_params": 0,
              "trainable_share": 0.0}
    if spec.get("forgetting"):
        emit({"event": "phase", "phase": "forgetting probe"})
        record["forgetting"] = measure.forgetting_probe(loaded.model, loaded.tokenizer, spec["measure"]["mmlu_items"],
                                                        spec["measure"]["text_passages"])
    return record


def run_rag(spec: dict, emit: Emit) -> dict:
    """The base model answering with retrieved sources: index the corpus (cached), then retrieve for and
    score every test item; the index's build time and size on disk are the route's deployment cost."""
    from adaptlab.compare import rag
    from adaptlab.eval.catalog import get_task
    from adaptlab.models import load_model
    from adaptlab.rag.embed import Embedder
    from adaptlab.rag.store import open_store

    settings, path = spec["rag"], Path(spec["store"])
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    loaded, embedder = load_model(spec["model"]), Embedder(settings["embedder"])
    embedder.model                               # noqa: B018  (loads it now, so the load time counts it)
    load_s = time.perf_counter() - start
    store = open_store(str(path))
    try:
        emit({"event": "phase", "phase": "index"})
        index = rag.build_index(store, embedder, spec["corpus"], settings, path.with_name(rag.BUILD_FILE))
        build = rag.retrieving_context(loaded.tokenizer, store, embedder, settings["k"], settings["style"])
        start = time.perf_counter()
        test = measure.score_task(loaded.model, loaded.tokenizer, rag.with_questions(get_task(spec["task"])),
                                  limit=spec["measure"]["eval_limit"], progress=_eval_progress(emit, "eval"),
                                  context_builder=build)
        eval_s = time.perf_counter() - start     # retrieval included: it is part of answering
    finally:
        store.close()
    return {"test": test.as_dict(), "load_time_s": load_s, "eval_time_s": eval_s, "steps": 0, "tokens": 0,
            "train_time_s": 0.0, **_footprint(loaded.model), "trainable_params": 0, "trainable_share": 0.0,
            "artifact": str(path), "artifact_bytes": rag.index_bytes(path), "index_build_s": index["index_build_s"],
            "rag": {**index, "settings": rag.settings(settings), "index_bytes": rag.index_bytes(path)}}


def _curve_steps(max_steps: int, points: int, first: int = 1) -> set[int]:
    """`points` steps spread over training, none before `first` (the steps a budgeted cell timed)."""
    return {max(first, round(max_steps * (i + 1) / points)) for i in range(points)} if points else set()


def _trainer(spec: dict, on_step):
    """The route's trainer: for a fixed number of steps, or (`train_s` in the spec) timing its first `probe`
    steps and training for `train_s` seconds (compare/budgeted.py)."""
    from adaptlab.compare.budgeted import BudgetedTrainer
    from adaptlab.config import TrainConfig
    from adaptlab.train import Trainer

    cfg = TrainConfig.model_validate(spec["train"])
    if "train_s" in spec:
        return BudgetedTrainer(cfg, spec["train_s"], spec["probe"], on_step=on_step)
    return Trainer(cfg, on_step=on_step)


def _train(spec: dict, emit: Emit) -> tuple[object, object, list[list[float]]]:
    """Train the route; score the test metric on a few items at `curve_points` steps along the way.
    Returns (trainer, result, curve)."""
    m = spec["measure"]
    curve: list[list[float]] = []
    at: set[int] = set()

    def on_step(metrics) -> None:
        emit({"event": "progress", "phase": "train", "done": metrics.step, "total": metrics.max_steps,
              "loss": metrics.loss})
        if not at:                                    # max_steps is known once training runs
            at.update(_curve_steps(metrics.max_steps, m["curve_points"], trainer.start_step + 1))
        if metrics.step in at:
            trainer.model.eval()
            s = measure.score_task(trainer.model, trainer.tokenizer, spec["task"], limit=m["curve_items"])
            trainer.model.train()
            curve.append([metrics.step, s.score])

    trainer = _trainer(spec, on_step)
    return trainer, trainer.run(), curve


def run_train(spec: dict, emit: Emit) -> dict:
    """Train, reload the artifact from disk (timed), score it on the test and train splits, probe forgetting.
    A budgeted route that cannot be set up here is skipped with the reason."""
    from adaptlab.compare.budgeted import SetupError
    from adaptlab.methods.artifact import load_artifact

    try:
        trainer, result, curve = _train(spec, emit)
    except SetupError as e:
        return {"status": "skipped", "reason": f"cannot run here: {e}"}
    gc.collect()
    start = time.perf_counter()
    art = load_artifact(result.final_dir)
    load_s = time.perf_counter() - start
    m = spec["measure"]
    test = measure.score_task(art.model, art.tokenizer, spec["task"], limit=m["eval_limit"],
                              progress=_eval_progress(emit, "eval"))
    record = {"test": test.as_dict(), "curve": curve, "steps": result.steps, "tokens": result.tokens,
              "train_time_s": result.train_seconds, "tokens_per_s": result.tokens_per_s, "load_time_s": load_s,
              "eval_time_s": test.seconds, "artifact": str(result.final_dir),
              "artifact_bytes": measure.dir_bytes(result.final_dir), "train_losses": result.train_losses,
              "eval_losses": result.eval_losses, "trainable_params": result.trainable_params,
              "total_params": result.total_params,
              "trainable_share": result.trainable_params / max(result.total_params, 1)}
    if (timed := getattr(trainer, "measured", None)) is not None:
        record["speed"] = timed.as_dict()
    if spec.get("train_eval"):
        emit({"event": "phase", "phase": "train-split score"})
        record["train"] = measure.score_task(art.model, art.tokenizer, spec["train_eval"]).as_dict()
    emit({"event": "phase", "phase": "forgetting probe"})
    record["forgetting"] = measure.forgetting_probe(art.model, art.tokenizer, m["mmlu_items"], m["text_passages"])
    return record


def _reference_s(trainer) -> float:
    """Seconds of one step's forward pass without gradients: what a reference pass over the step's pairs
    costs (DPO computes it for every pair before training)."""
    import torch

    start = time.perf_counter()
    with torch.no_grad(), trainer.autocast():
        for batch in trainer.step_batches(0):
            trainer.loss(batch.to(trainer.device))
    return time.perf_counter() - start


def _time_route(train: dict, steps: int, reference_pass: bool = False) -> Speed:
    from adaptlab.config import TrainConfig
    from adaptlab.train import Trainer

    cfg = TrainConfig.model_validate({**train, "max_steps": steps + 1, "eval_every": 0, "save_every": 0})
    start = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.setup()
    setup_s = time.perf_counter() - start
    trainer.train_step(0)                       # the first step pays one-off costs; not timed
    start, tokens = time.perf_counter(), 0
    for step in range(1, steps + 1):
        tokens += trainer.train_step(step)[1]
    step_s = (time.perf_counter() - start) / steps + (_reference_s(trainer) if reference_pass else 0.0)
    return Speed(cfg.output_dir, setup_s, step_s, tokens / steps)


def run_warmup(spec: dict, emit: Emit) -> dict:
    """Time `steps` optimizer steps of every training route; a route that cannot start gives its error."""
    speeds, errors = {}, {}
    for i, (route, train) in enumerate(spec["routes"].items()):
        emit({"event": "progress", "phase": route, "done": i, "total": len(spec["routes"])})
        try:
            speed = _time_route(train, spec["steps"], route in spec.get("reference_pass", ()))
            speeds[route] = {**speed.as_dict(), "route": route}
        except Exception as e:  # noqa: BLE001  (a route that cannot run here is reported, the rest go on)
            errors[route] = f"{type(e).__name__}: {e}"
        gc.collect()
    return {"speeds": speeds, "errors": errors}


CELL_KINDS: dict[str, Callable[[dict, Emit], dict]] = {"prompt": run_prompt, "rag": run_rag, "train": run_train,
                                                       "warmup": run_warmup}


def run_spec(spec_path: str, conn) -> None:
    """Run the cell described by the JSON file `spec_path`; events go to `conn.send`."""
    err = open(Path(spec_path).with_name("stderr.log"), "w", encoding="utf-8")  # noqa: SIM115  (lives as long as the process)
    os.dup2(err.fileno(), 2)
    sys.stderr = err
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    startup_s = time.time() - spec.get("started_at", time.time())
    emit = conn.send
    start, cpu = time.perf_counter(), time.process_time()
    record = CELL_KINDS[spec["kind"]](spec, emit)
    # CPU seconds beside wall seconds: on a loaded machine wall time says little about the cell's own cost
    record.update(startup_s=startup_s, cell_s=time.perf_counter() - start, cpu_s=time.process_time() - cpu,
                  peak_memory_mb=measure.peak_memory_mb(),
                  versions=measure.versions(), hardware=measure.hardware())
    write_json(Path(spec["out"]), record)
