"""Training objectives behind one registry (`get_objective(name)`)."""

from adaptlab.train.objectives import sft  # noqa: F401  (importing registers it)
from adaptlab.train.objectives.base import OBJECTIVES, Objective, get_objective, register

__all__ = ["OBJECTIVES", "Objective", "get_objective", "register"]
