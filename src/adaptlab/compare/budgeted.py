"""A trainer that times its own first steps and then trains for a given number of seconds.

Under `share: time` every training route gets the same wall-clock share T_i of the budget. Rather than a
separate warm-up process that loads every route once more only to time a step, the cell's own trainer
times its first `probe` optimizer steps (after one untimed step that pays one-off costs) and trains

    steps_i = max(probe + 2, floor(T_i / s_i))

steps in all, s_i being the measured seconds per step (`planner.steps_for`): at least one step after
the timed ones, so training reports its progress and curve points like any other run. The probe steps are real
training steps: they stay in the run. The learning-rate schedule is re-aimed at the chosen step count;
the probe steps ran under the provisional one, which differs only where they pass the schedule's warmup.
"""

from __future__ import annotations

import time

from adaptlab.compare.planner import Speed, steps_for
from adaptlab.train import Trainer
from adaptlab.train.loop import TrainResult, lr_lambda


class SetupError(Exception):
    """The route could not be set up here (memory, an unsupported option): the cell is skipped, not failed."""


class BudgetedTrainer(Trainer):
    """`Trainer` whose `max_steps` is decided after timing its first steps; `measured` keeps what it timed."""

    def __init__(self, cfg, train_s: float, probe: int, on_step=None):
        super().__init__(cfg, on_step=on_step)
        self.train_s, self.probe = train_s, probe
        self.probe_losses: list[float] = []
        self.probe_tokens, self.probe_s = 0, 0.0

    def setup(self) -> None:
        start = time.perf_counter()
        try:
            super().setup()
        except Exception as e:  # any failure to start is reported as the route's skip reason
            raise SetupError(f"{type(e).__name__}: {e}") from e
        setup_s = time.perf_counter() - start
        timed_s, timed_tokens = 0.0, 0
        for step in range(self.probe + 1):        # step 0 pays one-off costs: not timed
            t0 = time.perf_counter()
            loss, tokens, _ = self.train_step(step)
            seconds = time.perf_counter() - t0
            self.probe_losses.append(loss)
            self.probe_tokens, self.probe_s = self.probe_tokens + tokens, self.probe_s + seconds
            if step:
                timed_s, timed_tokens = timed_s + seconds, timed_tokens + tokens
        self.measured = Speed(self.cfg.method.name, setup_s, timed_s / self.probe, timed_tokens / self.probe)
        steps = steps_for(self.train_s, self.measured.step_s, self.probe + 2)
        self.cfg = self.cfg.model_copy(update={"max_steps": steps})
        self.scheduler.lr_lambdas = [lr_lambda(self.cfg)] * len(self.scheduler.lr_lambdas)
        self.start_step = self.probe + 1

    def run(self) -> TrainResult:
        result = super().run()
        result.train_losses = self.probe_losses + result.train_losses
        result.tokens += self.probe_tokens
        result.train_seconds += self.probe_s
        return result
