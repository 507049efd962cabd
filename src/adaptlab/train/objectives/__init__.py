"""Training objectives behind one registry (`get_objective(name)`)."""

from adaptlab.train.objectives import dpo, ppo, reward, rloo, sft  # noqa: F401  (importing registers them)
from adaptlab.train.objectives.base import OBJECTIVES, Objective, get_objective, register

__all__ = ["OBJECTIVES", "Objective", "get_objective", "register"]
