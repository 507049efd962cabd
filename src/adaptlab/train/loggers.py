"""Where step metrics go: a JSONL file always; TensorBoard and Weights & Biases when installed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from adaptlab.atomic import write_text

log = logging.getLogger(__name__)


def _step(line: str) -> int | None:
    try:
        return json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None    # a line cut short by a crash


def keep_steps_up_to(path: Path, start_step: int) -> None:
    """Drop the rows after `start_step` (written after the checkpoint a resumed run restarts from), so the
    file never holds a step twice; rewritten atomically."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if (step := _step(line)) is not None and step <= start_step]
    if len(kept) != len(lines):
        write_text(path, "".join(f"{line}\n" for line in kept))


class JsonlLogger:
    def __init__(self, output_dir: Path, config: dict, start_step: int = 0):
        path = Path(output_dir) / "metrics.jsonl"
        keep_steps_up_to(path, start_step)
        self.file = open(path, "a", encoding="utf-8")

    def log(self, metrics: dict) -> None:
        self.file.write(json.dumps(metrics) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardLogger:
    def __init__(self, output_dir: Path, config: dict, start_step: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops the events logged after the checkpoint a resumed run restarts from
        self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=start_step + 1 if start_step else None)

    def log(self, metrics: dict) -> None:
        for key, value in metrics.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, metrics["step"])

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, output_dir: Path, config: dict, start_step: int = 0):
        import wandb

        self.run = wandb.init(project="adaptlab", dir=str(output_dir), config=config)

    def log(self, metrics: dict) -> None:
        self.run.log(metrics, step=metrics["step"])

    def close(self) -> None:
        self.run.finish()


LOGGERS = {"jsonl": JsonlLogger, "tensorboard": TensorBoardLogger, "wandb": WandbLogger}


def open_loggers(names: list[str], output_dir: Path, config: dict, start_step: int = 0) -> list:
    """Open the requested loggers (continuing after `start_step`); one whose library is missing is skipped
    with a warning, not a crash."""
    out = []
    for name in names:
        try:
            out.append(LOGGERS[name](output_dir, config, start_step))
        except ImportError as e:
            log.warning("logger %s is not available (%s); install it to use it", name, e)
    return out
