"""The training engine: `train(TrainConfig)` runs any objective with any method."""

from adaptlab.train.loop import StepMetrics, Trainer, TrainResult, train

__all__ = ["StepMetrics", "TrainResult", "Trainer", "train"]
