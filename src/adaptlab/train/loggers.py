"""Where step metrics go: a JSONL file always; TensorBoard and Weights & Biases when installed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class JsonlLogger:
    def __init__(self, output_dir: Path, config: dict):
        self.file = open(Path(output_dir) / "metrics.jsonl", "a", encoding="utf-8")

    def log(self, metrics: dict) -> None:
        self.file.write(json.dumps(metrics) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardLogger:
    def __init__(self, output_dir: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def log(self, metrics: dict) -> None:
        for key, value in metrics.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, metrics["step"])

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, output_dir: Path, config: dict):
        import wandb

        self.run = wandb.init(project="adaptlab", dir=str(output_dir), config=config)

    def log(self, metrics: dict) -> None:
        self.run.log(metrics, step=metrics["step"])

    def close(self) -> None:
        self.run.finish()


LOGGERS = {"jsonl": JsonlLogger, "tensorboard": TensorBoardLogger, "wandb": WandbLogger}


def open_loggers(names: list[str], output_dir: Path, config: dict) -> list:
    """Open the requested loggers; one whose library is missing is skipped with a warning, not a crash."""
    out = []
    for name in names:
        try:
            out.append(LOGGERS[name](output_dir, config))
        except ImportError as e:
            log.warning("logger %s is not available (%s); install it to use it", name, e)
    return out
