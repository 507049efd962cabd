"""Careless inputs and parallel starts: a byte-order mark, a file that is not UTF-8, two processes converting the
builtin model at once, and the libraries' own noise in the CLI's output."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from adaptlab.data.records import RecordError
from adaptlab.data.sources import load_records
from adaptlab.models import registry

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize(("suffix", "body"), [
    (".jsonl", b'{"instruction": "Say hi", "output": "hi"}\n{"instruction": "Say yo", "output": "yo"}\n'),
    (".json", b'[{"instruction": "Say hi", "output": "hi"}, {"instruction": "Say yo", "output": "yo"}]'),
    (".csv", b"instruction,output\nSay hi,hi\nSay yo,yo\n"),
])
def test_a_byte_order_mark_is_accepted(tmp_path, suffix, body):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(BOM + body)
    records = load_records(str(path))
    assert [r.instruction for r in records] == ["Say hi", "Say yo"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_an_encoding_error_names_the_file_and_line(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    rows = ([b'{"instruction": "a", "output": "b"}'] * 2 + ['{"instruction": "caf\u00e9", "output": "b"}'.encode("latin-1")]
            if suffix == ".jsonl" else [b"instruction,output", b"a,b", "caf\u00e9,b".encode("latin-1")])
    path.write_bytes(b"\n".join(rows) + b"\n")
    with pytest.raises(RecordError, match="not UTF-8") as e:
        load_records(str(path))
    assert f"{path}:3" in str(e.value)


def _resolve_builtin(cache: str) -> None:
    os.environ["ADAPTLAB_CACHE"] = cache
    registry.resolve("smollm2-135m")


def test_two_processes_convert_the_builtin_model_once(tmp_path, monkeypatch):
    """torchrun starts every rank at once: one converts, the others wait for it and load its result."""
    calls = tmp_path / "conversions"

    def slow_convert(gguf: Path, target: Path) -> Path:
        with open(calls, "a") as f:
            f.write("x")
        time.sleep(1.0)                      # both ranks are inside `resolve` by now
        tmp = Path(tempfile.mkdtemp(dir=target.parent))
        (tmp / "config.json").write_text(json.dumps({"model_type": "llama"}))
        os.replace(tmp, target)              # the second rank's rename would fail on the full folder
        return target

    monkeypatch.setattr(registry, "_convert_gguf", slow_convert)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_resolve_builtin, args=(str(tmp_path / "cache"),)) for _ in range(2)]
    [p.start() for p in procs]
    [p.join(60) for p in procs]
    assert [p.exitcode for p in procs] == [0, 0]
    assert calls.read_text() == "x"
    assert (tmp_path / "cache" / "models" / "smollm2-135m" / "config.json").exists()


_LOAD_AS_THE_CLI_DOES = """
import sys
from adaptlab.cli import main
main(verbose=False)                                   # the callback every subcommand runs first
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])   # transformers draws a "Loading weights" bar
model.is_gradient_checkpointing                       # the FutureWarning peft triggers at every start
print("loaded")
"""


def test_the_cli_shows_no_library_noise(tiny_dir):
    """What `adaptlab train` prints besides its own lines: no FutureWarning, no "Loading weights" bar."""
    done = subprocess.run([sys.executable, "-c", _LOAD_AS_THE_CLI_DOES, str(tiny_dir)], capture_output=True, text=True,
                          timeout=300, check=False, env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST")})
    assert done.returncode == 0 and done.stdout.strip() == "loaded", done.stderr
    for noise in ("Warning", "Loading weights", "it/s]", "warnings.warn"):
        assert noise not in done.stderr, done.stderr
