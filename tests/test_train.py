"""The training engine on the tiny model: loss falls, runs describe themselves, checkpoints resume exactly,
two processes follow one process, and a fine-tuned model stops at the end-of-turn token."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adaptlab.config import load_config
from adaptlab.train import train
from adaptlab.train.checkpoint import latest_checkpoint
from tests.conftest import write_jsonl

ROWS = [{"instruction": f"What is {i} plus {i}?", "output": f"{i} plus {i} is {2 * i}."} for i in range(40)]


def make_recipe(tmp_path: Path, tiny_dir: Path, **overrides) -> Path:
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    recipe = {
        "model": str(tiny_dir), "method": {"name": "lora", "r": 4, "alpha": 8},
        "data": {"train": str(data), "eval_fraction": 0.2, "eval_max": 8},
        "optim": {"lr": 3e-3, "warmup_steps": 2}, "seq_len": 128, "batch_size": 2, "max_steps": 12,
        "eval_every": 6, "save_every": 4, "keep_last": 2, "dtype": "fp32", "output_dir": str(tmp_path / "run"),
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            recipe[section][field] = value
        else:
            recipe[key] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    last = latest_checkpoint(run_dir)
    return load_file(last / "trainable.safetensors")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_training_lowers_eval_loss_and_writes_a_manifest(tmp_path, tiny_dir, method):
    cfg = load_config(make_recipe(tmp_path, tiny_dir, method__name=method, optim__lr=3e-3 if method == "lora" else 1e-3))
    result = train(cfg)
    assert result.eval_losses[-1][1] < result.eval_losses[0][1]
    assert (result.final_dir / "adaptlab.json").exists()
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    assert manifest["seed"] == 42 and manifest["config"]["method"]["name"] == method
    assert len(manifest["data_sha256"]["train"]) == 64 and manifest["versions"]["torch"]
    assert "cpu" in manifest["hardware"]
    lines = (result.output_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 13))
    ckpts = sorted(p.name for p in (result.output_dir / "checkpoints").iterdir())
    assert ckpts == ["step-000008", "step-000012"]  # keep_last=2


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "adaptlab.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_then_resume_gives_the_same_weights(tmp_path, tiny_dir):
    recipe = make_recipe(tmp_path, tiny_dir, max_steps=16, save_every=2, eval_every=0)
    reference_dir = tmp_path / "reference"
    ref = run_cli("train", str(recipe), f"output_dir={reference_dir}")
    assert ref.wait(timeout=600) == 0, ref.stdout.read()

    victim_dir = tmp_path / "victim"
    proc = run_cli("train", str(recipe), f"output_dir={victim_dir}")
    deadline = time.time() + 600
    while latest_checkpoint(victim_dir) is None or latest_checkpoint(victim_dir).name < "step-000006":
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest_checkpoint(victim_dir).name
    assert killed_at < "step-000016"

    resumed = run_cli("train", str(recipe), f"output_dir={victim_dir}", "--resume")
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out
    a, b = final_weights(reference_dir), final_weights(victim_dir)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def torchrun(*args: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                           "-m", "adaptlab.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("parallel", "method", "port"), [("ddp", "lora", 29533), ("fsdp", "lora", 29534),
                                                          ("fsdp", "full", 29535)])
def test_two_processes_follow_one_process(tmp_path, tiny_dir, parallel, method, port):
    """2 processes x grad_accum 1 and 1 process x grad_accum 2 see the same global batch each step;
    the loss trajectories and final weights agree to fp32 summation-order noise (rtol 1e-4), whether the
    processes replicate the model (ddp) or shard it (fsdp)."""
    recipe = make_recipe(tmp_path, tiny_dir, max_steps=6, eval_every=3, save_every=0, method__name=method,
                         optim__lr=3e-3 if method == "lora" else 1e-3)
    one = run_cli("train", str(recipe), f"output_dir={tmp_path / 'one'}", "grad_accum=2")
    assert one.wait(timeout=600) == 0, one.stdout.read()
    two = torchrun("train", str(recipe), f"output_dir={tmp_path / 'two'}", "grad_accum=1", f"parallel={parallel}",
                   port=port)
    assert two.returncode == 0, two.stdout + two.stderr

    one_l, two_l = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one_l) == len(two_l) == 6
    torch.testing.assert_close(torch.tensor(two_l), torch.tensor(one_l), rtol=1e-4, atol=1e-5)
    a, b = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["parallel"] == parallel
    assert (tmp_path / "two" / "final" / "adaptlab.json").exists()


def test_fsdp_run_resumes_from_its_sharded_checkpoint(tmp_path, tiny_dir):
    """Under fsdp the checkpoint holds the gathered weights and optimizer state; a run that lost its last
    checkpoint resumes from the one before and ends where an uninterrupted single process ends."""
    recipe = make_recipe(tmp_path, tiny_dir, method__name="full", optim__lr=1e-3, max_steps=6, eval_every=0,
                         save_every=3)
    one = run_cli("train", str(recipe), f"output_dir={tmp_path / 'one'}", "grad_accum=2")
    assert one.wait(timeout=600) == 0, one.stdout.read()
    args = ("train", str(recipe), f"output_dir={tmp_path / 'two'}", "grad_accum=1", "parallel=fsdp")
    first = torchrun(*args, port=29536)
    assert first.returncode == 0, first.stdout + first.stderr
    shutil.rmtree(tmp_path / "two" / "checkpoints" / "step-000006")   # as if killed after step 3's checkpoint
    resumed = torchrun(*args, "--resume", port=29537)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["resumed_from_step"] == 3
    a, b = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)


def test_fine_tuned_model_stops_at_end_of_turn(tmp_path, tiny_dir):
    from adaptlab.methods.artifact import load_artifact

    rows = [{"instruction": "Name a colour.", "output": "Blue."}, {"instruction": "Name a fruit.", "output": "Apple."}]
    data = write_jsonl(tmp_path / "tiny.jsonl", rows)
    cfg = load_config(make_recipe(tmp_path, tiny_dir, max_steps=60, eval_every=0, save_every=0,
                                  method__name="full", optim__lr=3e-3, optim__warmup_steps=0, optim__schedule="constant",
                                  data={"train": str(data), "eval_fraction": 0.0}))
    result = train(cfg)
    art = load_artifact(result.final_dir, dtype="fp32", device="cpu")
    tok = art.tokenizer
    prompt = tok.apply_chat_template([{"role": "user", "content": "Name a fruit."}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    out = art.model.generate(ids, max_new_tokens=20, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    new = out[0, ids.shape[1]:].tolist()
    assert tok.eos_token_id in new, tok.decode(new)
    assert tok.decode(new[: new.index(tok.eos_token_id)]).strip() == "Apple."


def test_parallel_auto_follows_accelerate_fsdp_config(monkeypatch):
    from adaptlab.train.distributed import World, choose_parallel

    two = World(rank=0, size=2)
    assert choose_parallel("auto", two) == "ddp" and choose_parallel("auto", World()) == "single"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")   # what `accelerate launch` sets for an FSDP config
    assert choose_parallel("auto", two) == "fsdp" and choose_parallel("ddp", two) == "ddp"
