"""`manifest.json`: everything needed to know what a run was and to regenerate its report."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from adaptlab.atomic import write_text
from adaptlab.models.device import total_memory_mb

LIBRARIES = ["adaptlab", "torch", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "trl",
             "sentence-transformers", "safetensors"]


def library_versions() -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        info["memory_gb"] = round(total_memory_mb(torch.device("cpu")) / 1024, 1)
    except (ValueError, OSError):
        pass
    return info


def git_revision() -> str | None:
    """The project's git commit when adaptlab runs from a checkout (with `-dirty` for local edits)."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def _as_json(value):
    """`value` as it reads back from the manifest (tuples become lists, other objects strings)."""
    return json.loads(json.dumps(value, default=str))


def write_manifest(path: Path, *, config: dict, seed: int, data_hashes: dict[str, str], world_size: int,
                   extra: dict | None = None, resume: bool = False) -> dict:
    """Write the run's manifest; on resume keep the original (its config, data hashes, versions) and append
    the resume to its `resumes` list (`resumed_from_step` is the latest one's step)."""
    now = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "seed": seed,
        "config": config,
        "data_sha256": data_hashes,
        "versions": library_versions(),
        "hardware": hardware(),
        "world_size": world_size,
        "git_revision": git_revision(),
        **(extra or {}),
    }
    manifest = now
    if resume and path.exists():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        step = now.get("resumed_from_step", 0)
        entry = {"at": now["created"], "step": step, "command": now["command"], "git_revision": now["git_revision"],
                 "world_size": world_size, "config_changed": _as_json(config) != manifest.get("config"),
                 "data_changed": data_hashes != manifest.get("data_sha256")}
        manifest = {**manifest, "resumed_from_step": step, "resumes": [*manifest.get("resumes", []), entry]}
    write_text(path, json.dumps(manifest, indent=2, default=str))
    return manifest
