"""The planner's peak memory against real training runs of the builtin model (each in its own process,
because a process's peak resident set never goes down): within 15% for full, lora and qlora."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from adaptlab.memplan.device import DTYPE_NAMES
from adaptlab.memplan.estimate import Settings, estimate
from adaptlab.memplan.shapes import load_shape
from adaptlab.models import auto_device, auto_dtype

pytestmark = pytest.mark.slow
SEQ, BATCH = 256, 2
RUN = f"""
import json, sys
from adaptlab.config import load_config
from adaptlab.train.loop import train
cfg = load_config(None, ["method.name=" + sys.argv[1], "seq_len={SEQ}", "batch_size={BATCH}", "max_steps=1",
                         "eval_every=0", "save_every=0", "data.limit=64", "compile=false", "output_dir=" + sys.argv[2]])
print(json.dumps({{"peak_mb": train(cfg).peak_mb}}))
"""


@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_estimate_is_within_15_percent_of_the_measured_peak(method, tmp_path):
    done = subprocess.run([sys.executable, "-c", RUN, method, str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]
    device = auto_device()
    settings = Settings(seq_len=SEQ, batch_size=BATCH, dtype=DTYPE_NAMES[auto_dtype("auto", device)])
    predicted = estimate(load_shape("smollm2-135m"), method, settings, device.type).peak_mb
    assert predicted == pytest.approx(measured, rel=0.15), f"{method}: estimated {predicted:.0f} MiB, measured {measured:.0f} MiB"
