"""The compare matrix: split the task, score the prompting and rag routes, warm up, plan, train every route.

Each cell runs in its own process (`adaptlab.compare.cell.run_spec`, forked from a fork server that
has the libraries imported), so its peak memory is its own and a
crash or an out-of-memory kill ends only that cell: its row says what happened and the others run.
A cell's spec is hashed; a finished cell whose record carries the same hash is not run again, so an
interrupted run continues where it stopped, and `only` reruns the named routes. The plan (seconds or steps
per training route) is kept in `plan.json` beside the records, so a resumed run trains to the same plan.
Under `share: time` each training cell times its own first steps and trains for its share of seconds; a
warm-up process that times every route first runs only where steps must be known before a cell starts
(`share: tokens`, and objectives whose setup reads only the records its steps use).

Everything the report needs is on disk: `run.json` (task, budget, plan) and one
`cells/<route>-s<seed>/record.json` per cell.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from adaptlab.atomic import write_json
from adaptlab.compare.cell import run_spec
from adaptlab.compare.planner import Speed, plan_steps, training_seconds
from adaptlab.compare.rag import corpus_digest, store_path
from adaptlab.compare.recipe import CompareConfig, RouteSpec
from adaptlab.compare.routes import TRAIN_ROUTES, skip_reason, training_keys
from adaptlab.compare.taskdata import TaskFiles, write_task
from adaptlab.config import TrainConfig
from adaptlab.methods import get_method
from adaptlab.rag.answer import STYLES
from adaptlab.registry import lookup

Listener = Callable[[dict], None]
SAVE_S = 2.0          # writing and reading an artifact, beyond what the warm-up measured
PRELOAD = ["adaptlab.compare.cell", "adaptlab.train", "adaptlab.methods", "peft"]   # imported once, by the fork server


def config_hash(spec: dict) -> str:
    """sha256 of everything that decides a cell's result (not when it was started)."""
    stable = {k: v for k, v in spec.items() if k not in ("started_at", "out")}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def deep_merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, section by section (a route's `optim.lr` keeps the shared `optim.schedule`)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_child(spec: dict, workdir: Path, listener: Listener, key: str) -> tuple[int, str]:
    """Run one cell process; forward its progress events; return (exit status, the end of its stderr)."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path, err_path = workdir / "spec.json", workdir / "stderr.log"
    err_path.unlink(missing_ok=True)
    write_json(spec_path, {**spec, "started_at": time.time()})
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=run_spec, args=(str(spec_path), send), name=f"adaptlab-cell-{key}")
    proc.start()
    send.close()
    try:
        while True:
            try:
                listener({**receive.recv(), "cell": key})
            except EOFError:
                break
        proc.join()
    except BaseException:
        proc.kill()
        proc.join()
        raise
    stderr = err_path.read_text(encoding="utf-8", errors="replace")[-2000:] if err_path.exists() else ""
    return proc.exitcode, stderr


def _failure(status: int, stderr: str) -> str:
    if status in (-9, 137):  # SIGKILL: the kernel's out-of-memory killer, most often
        return "killed by the system (out of memory?)"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {status}"


class Matrix:
    """One compare run: `run()` executes what is missing and returns every cell's record."""

    def __init__(self, cfg: CompareConfig, budget_s: float, only: list[str] | None = None,
                 listener: Listener | None = None):
        self.cfg, self.budget_s, self.listener = cfg, float(budget_s), listener or (lambda e: None)
        self.out = Path(cfg.output_dir)
        self.only = set(only or [])
        unknown = self.only - {r.name for r in cfg.routes}
        if unknown:
            raise ValueError(f"--only {', '.join(sorted(unknown))}: no such route; routes: "
                             f"{', '.join(r.name for r in cfg.routes)}")
        self.start = time.perf_counter()
        self.records: dict[str, dict] = {}

    # ---- cells --------------------------------------------------------------------------------
    def key(self, route: RouteSpec, seed: int) -> str:
        return f"{route.name}-s{seed}"

    def record_path(self, key: str) -> Path:
        return self.out / "cells" / key / "record.json"

    def cached(self, key: str, route: RouteSpec, digest: str) -> dict | None:
        path = self.record_path(key)
        if route.name in self.only or not path.exists():
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
        return record if record.get("config_hash") == digest and record.get("status") == "ok" else None

    def finish(self, key: str, record: dict) -> dict:
        self.record_path(key).parent.mkdir(parents=True, exist_ok=True)
        write_json(self.record_path(key), record)
        self.records[key] = record
        self.listener({"event": "done", "cell": key, "record": record})
        return record

    def run_cell(self, route: RouteSpec, seed: int, spec: dict, meta: dict) -> dict:
        key = self.key(route, seed)
        digest = config_hash(spec)
        meta = {"route": route.name, "seed": seed, "config_hash": digest, "model": self.cfg.model,
                "task": self.cfg.task.name, **meta}
        if (hit := self.cached(key, route, digest)) is not None:
            self.records[key] = hit
            self.listener({"event": "done", "cell": key, "record": hit, "cached": True})
            return hit
        self.listener({"event": "start", "cell": key})
        out = self.record_path(key)
        out.unlink(missing_ok=True)
        start = time.perf_counter()
        status, stderr = run_child({**spec, "out": str(out)}, out.parent, self.listener, key)
        wall = time.perf_counter() - start
        if status == 0 and out.exists():
            # a cell may end as skipped (a route that cannot be set up here says why)
            return self.finish(key, {**meta, "status": "ok", **json.loads(out.read_text(encoding="utf-8")),
                                     "wall_s": wall})
        return self.finish(key, {**meta, "status": "failed", "error": _failure(status, stderr), "wall_s": wall})

    def skip(self, route: RouteSpec, seed: int, reason: str, meta: dict) -> dict:
        return self.finish(self.key(route, seed), {"route": route.name, "seed": seed, "model": self.cfg.model,
                                                   "task": self.cfg.task.name, **meta, "status": "skipped",
                                                   "reason": reason})

    # ---- the matrix ---------------------------------------------------------------------------
    def train_config(self, route: RouteSpec, seed: int, files: TaskFiles, steps: int) -> dict:
        """The route's full TrainConfig (validated) for `steps` steps, its data and objective from the task."""
        tree = deep_merge(deep_merge(self.cfg.train, route.train), {
            "model": self.cfg.model, "method": route.method, "seed": seed, "loggers": ["jsonl"], "save_every": 0,
            "max_steps": steps, "eval_every": 0, "output_dir": str(self.out / "cells" / self.key(route, seed) / "run")})
        cfg = TrainConfig.model_validate(tree)
        tree = deep_merge(tree, training_keys(route, files, steps, cfg.batch_size * cfg.grad_accum))
        cfg = TrainConfig.model_validate(tree)
        get_method(cfg.method.name)
        return cfg.model_dump()

    def measure_spec(self) -> dict:
        return self.cfg.measure.model_dump()

    def rag_cell(self, route: RouteSpec, files: TaskFiles) -> None:
        """The base model with sources retrieved from task.corpus (compare/rag.py); skipped without a corpus."""
        seed, meta = self.cfg.seeds[0], {"kind": "rag", "shots": 0, "method": None}
        if reason := skip_reason(route, files):
            self.skip(route, seed, reason, meta)
            return
        rag = route.rag.model_dump()
        try:
            lookup(STYLES, rag["style"], "rag style")
        except ValueError as e:
            self.skip(route, seed, f"invalid route: {e}", meta)
            return
        spec = {"kind": "rag", "model": self.cfg.model, "task": str(files.test), "measure": self.measure_spec(),
                "rag": rag, "corpus": files.corpus, "corpus_digest": corpus_digest(files.corpus),
                "store": str(store_path(self.out / "rag", files.corpus, rag))}
        self.run_cell(route, seed, spec, meta)

    def prompt_cell(self, route: RouteSpec, files: TaskFiles) -> None:
        """The base model with a zero- or few-shot prompt; the first zero-shot cell also probes forgetting."""
        spec = {"kind": "prompt", "model": self.cfg.model, "task": str(files.shots(route.shots)),
                "measure": self.measure_spec(), "forgetting": route.shots == 0 and not self.probed}
        self.probed = self.probed or spec["forgetting"]
        meta = {"kind": "prompt", "shots": route.shots, "method": None}
        if route.shots >= files.n_train:
            self.skip(route, self.cfg.seeds[0], f"{route.shots} shots need more training rows than "
                      f"{files.n_train}", meta)
            return
        self.run_cell(route, self.cfg.seeds[0], spec, meta)

    def untrained_cells(self, files: TaskFiles) -> None:
        """Every route that trains nothing (prompting, rag), before the warm-up so their time is known."""
        self.probed = False
        cell = {"prompt": self.prompt_cell, "rag": self.rag_cell}
        for route in (r for r in self.cfg.routes if not r.trains):
            cell[route.kind](route, files)

    def base_record(self) -> dict | None:
        """The zero-shot cell's record: its load, evaluation and forgetting times estimate a training cell's."""
        return next((r for r in self.records.values() if r.get("forgetting") and r.get("kind") == "prompt"), None)

    def overhead_s(self, setup_s: float) -> float:
        """A training cell's time besides its steps: `setup_s` of setting up, then what the zero-shot cell took."""
        base = self.base_record()
        if base is None:
            return setup_s + SAVE_S
        m = self.cfg.measure
        per_item = base["test"]["seconds"] / max(base["test"]["n"], 1)
        items = base["test"]["n"] + m.train_eval + m.curve_points * m.curve_items
        # the least start-up any cell took: the first cell's also started the fork server, which runs once
        startup = min(r.get("startup_s", 0.0) for r in self.records.values() if r.get("status") == "ok")
        return startup + setup_s + SAVE_S + per_item * items + base["forgetting"]["seconds"]

    def needs_warmup(self, configs: dict[str, dict]) -> bool:
        """Equal tokens need every route's step time before any trains; an objective reading only the records
        its steps use needs the step count before setup. Equal time lets each cell time itself."""
        return self.cfg.share == "tokens" or any(TRAIN_ROUTES[c["objective"]].once_per_record
                                                 for c in configs.values())

    def plan(self, configs: dict[str, dict]) -> dict:
        """Seconds or steps per training route: reuse `plan.json` when it was made for this recipe and budget."""
        path = self.out / "plan.json"
        warm = self.needs_warmup(configs)
        digest = config_hash({"configs": configs, "budget_s": self.budget_s, "share": self.cfg.share, "warm": warm})
        if path.exists() and (old := json.loads(path.read_text(encoding="utf-8"))).get("hash") == digest:
            return old
        plan = self.warmup_plan(configs) if warm else self.time_plan(configs)
        write_json(path, {"hash": digest, "budget_s": self.budget_s, "share": self.cfg.share, **plan})
        return json.loads(path.read_text(encoding="utf-8"))

    def time_plan(self, configs: dict[str, dict]) -> dict:
        """Equal seconds per training cell, its setup estimated by the zero-shot cell's model load (the cell
        times its own steps: `compare/budgeted.py`)."""
        base = self.base_record()
        overhead = self.overhead_s(base["load_time_s"] if base else 0.0)
        n_seeds = len(self.cfg.seeds)
        # a wider margin than the warm-up plan's: a cell's own setup beyond the model load (quantizing, LoftQ's
        # SVDs), its untimed first step and its save are not in `overhead` (measured: ~5% over at margin 0.1)
        seconds = training_seconds(self.budget_s, time.perf_counter() - self.start,
                                   [overhead] * len(configs) * n_seeds, margin=0.2) / n_seeds
        return {"training_s": seconds, "train_s": dict.fromkeys(configs, seconds / len(configs)), "steps": {}, "speeds": {},
                "errors": {}, "overheads_s": dict.fromkeys(configs, overhead)}

    def warmup_plan(self, configs: dict[str, dict]) -> dict:
        """Steps per route from a warm-up process that sets up every route and times its steps."""
        self.listener({"event": "start", "cell": "warm-up"})
        reference = [name for name, c in configs.items() if TRAIN_ROUTES[c["objective"]].reference_pass]
        status, stderr = run_child({"kind": "warmup", "routes": configs, "steps": self.cfg.warmup_steps,
                                    "reference_pass": reference,
                                    "out": str(self.out / "warmup" / "record.json")},
                                   self.out / "warmup", self.listener, "warm-up")
        if status != 0:
            raise RuntimeError(f"the warm-up failed: {_failure(status, stderr)}")
        warm = json.loads((self.out / "warmup" / "record.json").read_text(encoding="utf-8"))
        speeds = [Speed(**s) for s in warm["speeds"].values()]
        n_cells = len(self.cfg.seeds)
        overheads = [self.overhead_s(2 * s.setup_s) for s in speeds for _ in range(n_cells)]  # warm-up and cell
        seconds = training_seconds(self.budget_s, time.perf_counter() - self.start, overheads) / n_cells
        return {"training_s": seconds, "steps": plan_steps(speeds, seconds, self.cfg.share), "speeds": warm["speeds"],
                "errors": warm["errors"], "overheads_s": dict(zip([s.route for s in speeds], overheads[::n_cells]))}

    def train_cells(self, files: TaskFiles) -> None:
        configs, invalid, lacking = {}, {}, {}
        for route in (r for r in self.cfg.routes if r.trains):
            try:
                if reason := skip_reason(route, files):
                    lacking[route.name] = reason
                    continue
                configs[route.name] = self.train_config(route, self.cfg.seeds[0], files, self.cfg.warmup_steps + 1)
            except (ValidationError, ValueError) as e:
                invalid[route.name] = f"invalid route: {str(e).splitlines()[0]}"
        plan = self.plan(configs) if configs else {"steps": {}, "errors": {}}
        for route in (r for r in self.cfg.routes if r.trains):
            meta = {"kind": "train", "shots": 0, "method": (route.method or {}).get("name"), "objective": route.objective}
            for seed in self.cfg.seeds:
                if route.name in lacking:
                    self.skip(route, seed, lacking[route.name], meta)
                    continue
                reason = invalid.get(route.name) or plan["errors"].get(route.name)
                if reason:
                    self.skip(route, seed, f"cannot run here: {reason}", meta)
                    continue
                steps = plan["steps"].get(route.name)          # None: the cell times itself
                train = self.train_config(route, seed, files, steps or self.cfg.warmup_steps + 1)
                spec = {"kind": "train", "train": train, "task": str(files.test), "measure": self.measure_spec(),
                        "train_eval": str(files.train_eval) if files.train_eval else None}
                if steps is None:
                    spec.update(train_s=plan["train_s"][route.name], probe=self.cfg.warmup_steps)
                self.run_cell(route, seed, spec, {**meta, "planned_steps": steps, "share": self.cfg.share})

    def run(self) -> list[dict]:
        files = write_task(self.cfg.task, [r.shots for r in self.cfg.routes if r.kind == "prompt"],
                           self.cfg.measure.train_eval, self.out / "data")
        run = {"recipe": self.cfg.model_dump(), "budget_s": self.budget_s, "n_train": files.n_train,
               "n_test": files.n_test, "test_carved": files.carved, "test_task": str(files.test)}
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "run.json", run)
        self.untrained_cells(files)
        self.train_cells(files)
        run["elapsed_s"] = time.perf_counter() - self.start
        if (self.out / "plan.json").exists():
            run["plan"] = json.loads((self.out / "plan.json").read_text(encoding="utf-8"))
        write_json(self.out / "run.json", run)
        return list(self.records.values())


def load_records(dirs: list[Path]) -> tuple[dict, list[dict]]:
    """(the first run's run.json, every cell record under the given run folders)."""
    runs, records = [], []
    for d in dirs:
        run_file = Path(d) / "run.json"
        if not run_file.exists():
            raise FileNotFoundError(f"{d} is not a compare run folder (no run.json)")
        run = json.loads(run_file.read_text(encoding="utf-8"))
        if "plan" not in run and (Path(d) / "plan.json").exists():     # a run still going or interrupted
            run["plan"] = json.loads((Path(d) / "plan.json").read_text(encoding="utf-8"))
        runs.append(run)
        for path in sorted((Path(d) / "cells").glob("*/record.json")):
            records.append({**json.loads(path.read_text(encoding="utf-8")), "source": str(d)})
    return runs[0], records


def route_order(run: dict, records: list[dict]) -> list[dict]:
    """Records in the recipe's route order (then seed), routes unknown to the recipe last."""
    order = {r["name"]: i for i, r in enumerate(run["recipe"]["routes"])}
    return sorted(records, key=lambda r: (order.get(r["route"], len(order)), r.get("seed", 0)))


def compare(cfg: CompareConfig, budget_s: float, only: list[str] | None = None,
            listener: Listener | None = None) -> dict[str, Path]:
    """Run (or resume) the matrix and write its report next to the records; returns the report's files."""
    Matrix(cfg, budget_s, only, listener).run()
    return merge([Path(cfg.output_dir)], Path(cfg.output_dir))


def merge(dirs: list[Path], out: Path) -> dict[str, Path]:
    """One report from the records of several runs (machines, seeds) written into `out`."""
    from adaptlab.compare.report import write_report

    run, records = load_records(dirs)
    return write_report(run, route_order(run, records), out)
