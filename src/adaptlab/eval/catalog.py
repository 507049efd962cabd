"""The task registry: the builtin tasks by name, or a user's task from a YAML file.

Imports what it registers (no registration by import side effect, no cycle): `builtin_tasks` and
`custom` only know the task model in `tasks.py`.
"""

from __future__ import annotations

from adaptlab.eval.builtin_tasks import BUILTIN_TASKS
from adaptlab.eval.custom import load_custom_task
from adaptlab.eval.tasks import Task
from adaptlab.registry import lookup

TASKS: dict[str, Task] = {t.name: t for t in BUILTIN_TASKS}


def get_task(name: str) -> Task:
    """A registered task, or a custom task from a YAML file path; an unknown name lists the valid ones."""
    if name.endswith((".yaml", ".yml")):
        return load_custom_task(name)
    return lookup(TASKS, name, "task", "(or a path to a custom task .yaml)")
