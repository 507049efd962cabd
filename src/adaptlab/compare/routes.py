"""The compare route registry: what each route needs from the task, and what a training route trains on.

A route's kind follows from its recipe keys (`recipe.RouteSpec.kind`): `prompt` asks the base model with
zero or k exemplars; `rag` asks it with sources retrieved from `task.corpus` (compare/rag.py); `train`
trains a method with one of the objectives registered here, each fed from the task:

    sft   the labelled training split as instruction records (prompt -> gold answer)
    dpo   preference pairs: `task.preferences`, or pairs derived from the labels (`task.preferences_from_labels`)
    rloo  the training split's prompts, rewarded by the task's own metric against their gold answers
          (reward kind `task`, compare/reward.py)

A route the task cannot feed gets no cell: its row says what the task lacks and which recipe key gives it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adaptlab.compare.recipe import RouteSpec
from adaptlab.compare.taskdata import TaskFiles
from adaptlab.registry import lookup

NO_CORPUS = "the task has no corpus (set task.corpus)"
NO_PREFERENCES = ("the task has no preferences (set task.preferences to a {prompt, chosen, rejected} file, or "
                  "task.preferences_from_labels: true to derive pairs from the labelled training split)")


class Skip(Exception):
    """The task cannot feed this route; the message says what it lacks."""


@dataclass(frozen=True)
class TrainRoute:
    """How an objective's training data and settings come from the task."""
    data: Callable[[TaskFiles], dict]       # TrainConfig keys (data, objective settings); raises Skip
    once_per_record: bool = False           # setup passes over every record: read only what the steps use
    reference_pass: bool = False            # setup runs the reference model over every pair: the warm-up times
                                            # that forward pass per step, so the budget counts it


def _sft(files: TaskFiles) -> dict:
    return {"data": {"train": str(files.train)}}


def _dpo(files: TaskFiles) -> dict:
    if files.preferences is None:
        raise Skip(NO_PREFERENCES)
    return {"data": {"train": files.preferences}}


def _rloo(files: TaskFiles) -> dict:
    return {"data": {"train": str(files.train)}, "rloo": {"reward": f"task:{files.rewards}"}}


TRAIN_ROUTES: dict[str, TrainRoute] = {
    "sft": TrainRoute(_sft),
    "dpo": TrainRoute(_dpo, once_per_record=True, reference_pass=True),
    "rloo": TrainRoute(_rloo, once_per_record=True),    # every prompt is rendered up front: keep to what steps use
}


def training_keys(route: RouteSpec, files: TaskFiles, steps: int, batch: int) -> dict:
    """The TrainConfig keys the objective sets from the task. An objective whose setup touches every record
    reads only the records `steps` steps of `batch` rows use, and splits off no held-out records: the cell
    scores the test split, and held-out pairs or prompts would cost a reference pass or rollouts for nothing."""
    spec = lookup(TRAIN_ROUTES, route.objective, "compare objective")
    keys = {"objective": route.objective, **spec.data(files)}
    if spec.once_per_record:
        keys["data"].update(limit=steps * batch, eval_fraction=0.0)
    return keys


def skip_reason(route: RouteSpec, files: TaskFiles) -> str | None:
    """Why the task cannot feed `route`, or None when it can."""
    if route.kind == "rag":
        return None if files.corpus else NO_CORPUS
    if route.kind == "train":
        try:
            lookup(TRAIN_ROUTES, route.objective, "compare objective").data(files)
        except Skip as e:
            return str(e)
    return None
