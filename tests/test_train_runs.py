"""Runs never mix: a folder holding a run is refused without --resume/--overwrite, a resume keeps the run's
manifest and writes no step twice, checkpoints reach the disk before they count and an unreadable one is
skipped for the one before."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.train import checkpoint as ckpt
from adaptlab.train import train
from adaptlab.train.rundir import RunDirError
from tests.test_train import make_recipe


def _cfg(tmp_path: Path, tiny_dir: Path, **overrides):
    return load_config(make_recipe(tmp_path, tiny_dir, **{"max_steps": 4, "save_every": 2, "eval_every": 0,
                                                           "keep_last": 3, **overrides}))


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_folder_holding_a_run_is_refused_then_replaced_with_overwrite(tmp_path, tiny_dir):
    cfg = _cfg(tmp_path, tiny_dir)
    first = train(cfg)
    with pytest.raises(RunDirError, match="--resume.*--overwrite"):
        train(cfg.model_copy(update={"max_steps": 2}))
    assert _steps(first.output_dir) == [1, 2, 3, 4]
    assert [p.name for p in ckpt.checkpoints(first.output_dir)] == ["step-000002", "step-000004"]

    again = train(cfg.model_copy(update={"max_steps": 2}), overwrite=True)
    assert _steps(again.output_dir) == [1, 2]
    assert [p.name for p in ckpt.checkpoints(again.output_dir)] == ["step-000002"]
    assert json.loads((again.output_dir / "manifest.json").read_text())["config"]["max_steps"] == 2


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path, tiny_dir):
    cfg = _cfg(tmp_path, tiny_dir, output_dir=str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(RunDirError, match="holds no adaptlab run"):
        train(cfg, overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"
    with pytest.raises(RunDirError, match="choose one"):
        train(cfg, resume=True, overwrite=True)


def test_resume_keeps_the_manifest_skips_an_unreadable_checkpoint_and_writes_no_step_twice(tmp_path, tiny_dir,
                                                                                           caplog):
    cfg = _cfg(tmp_path, tiny_dir, max_steps=6)
    run = train(cfg.model_copy(update={"max_steps": 4})).output_dir
    before = json.loads((run / "manifest.json").read_text())
    newest = run / "checkpoints" / "step-000004" / "trainable.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])              # a crash left it truncated
    stale = run / "checkpoints" / f"{ckpt.TMP_PREFIX}killed"
    stale.mkdir()
    (stale / "trainable.safetensors").write_bytes(b"half")
    with caplog.at_level("WARNING"):
        train(cfg, resume=True)
    assert "step-000004" in caplog.text and "unreadable" in caplog.text
    after = json.loads((run / "manifest.json").read_text())
    assert after["created"] == before["created"] and after["config"] == before["config"]
    assert after["data_sha256"] == before["data_sha256"]
    assert after["resumed_from_step"] == 2 and [r["step"] for r in after["resumes"]] == [2]
    assert after["resumes"][0]["config_changed"] is True     # max_steps 4 -> 6
    assert _steps(run) == [1, 2, 3, 4, 5, 6]
    assert not stale.exists()


def test_checkpoint_files_and_folders_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync " + os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src, dst):
        events.append(f"replace {src}")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "fsync", fsync)
    monkeypatch.setattr(ckpt.os, "replace", replace)
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weight])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    ckpt.save_checkpoint(tmp_path, 2, {"w": weight.detach()}, optimizer.state_dict(), scheduler, keep_last=2)
    rename = next(i for i, e in enumerate(events) if e.startswith("replace"))
    tmp = events[rename].removeprefix("replace ")
    synced_before = {e.removeprefix("fsync ") for e in events[:rename]}
    assert {f"{tmp}/trainable.safetensors", f"{tmp}/optimizer.pt", f"{tmp}/state.json", tmp} <= synced_before
    assert f"fsync {Path(tmp).parent}" in events[rename + 1:]
