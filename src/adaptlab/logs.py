"""What the CLI shows while it works: adaptlab's own log lines and progress, not the libraries' noise.

transformers, huggingface_hub and datasets draw their own tqdm bars ("Loading weights", "Generating
train split") and raise FutureWarning/DeprecationWarning about each other's APIs at every start. The
CLI turns those off unless `--verbose`; the library itself changes no global setting.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from rich.logging import RichHandler

# read by huggingface_hub, transformers and datasets when they are imported
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
             "TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def setup_cli_logging(verbose: bool) -> None:
    """adaptlab's INFO lines through rich (DEBUG with `verbose`); without `verbose`, no third-party
    progress bars or deprecation warnings."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(show_path=False, show_time=False)])
    if verbose:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    if "transformers" in sys.modules:      # imported before the environment was set
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
