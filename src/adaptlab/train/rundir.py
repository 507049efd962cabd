"""One run per output folder: a new run refuses a folder that holds another, as the Hugging Face example
scripts do, unless told to continue it (`resume`) or to replace it (`overwrite`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# what a training run writes at the top of its folder; `overwrite` only deletes folders that hold one of them
RUN_FILES = ("manifest.json", "metrics.jsonl", "checkpoints", "final")


class RunDirError(ValueError):
    """The output folder holds another run (or something that is not a run)."""


def claim_output_dir(output_dir: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """Make `output_dir` ready for a run: nothing to do when it is missing or empty, or on `resume`; with
    `overwrite`, delete the earlier run there (only the main process of a torchrun group deletes)."""
    out = Path(output_dir)
    if resume and overwrite:
        raise RunDirError("choose one of --resume (continue the run) and --overwrite (replace it)")
    if resume or not out.exists() or not any(out.iterdir()):
        return
    if not any((out / name).exists() for name in RUN_FILES):
        raise RunDirError(f"output_dir {out} is not empty and holds no adaptlab run; choose another output_dir")
    if not overwrite:
        raise RunDirError(f"output_dir {out} already holds a run; pass --resume to continue it from its last "
                          "checkpoint or --overwrite to replace it (or choose another output_dir)")
    if int(os.environ.get("RANK", "0")) == 0:
        shutil.rmtree(out)
