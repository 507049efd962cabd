"""A trained artifact on disk: the method's own files plus `adaptlab.json` saying how to rebuild it.

    out/final/
      adaptlab.json                   {"method": "lora", "base_model": "smollm2-135m", "method_config": {...}}
      adapter_config.json, adapter_model.safetensors    (peft format, for adapter methods)
      config.json, model.safetensors                    (full fine-tuning / merged models)
      tokenizer files

Writes go to a temporary folder renamed into place, so a crash never leaves half an artifact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from transformers import PreTrainedTokenizerBase

from adaptlab.atomic import replacing
from adaptlab.methods.base import Method, MethodConfig, get_method

ARTIFACT_FILE = "adaptlab.json"


@dataclass
class Artifact:
    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    method: Method
    method_config: MethodConfig
    base_model: str


def save_artifact(model: nn.Module, tokenizer: PreTrainedTokenizerBase, method: Method, cfg: MethodConfig,
                  base_model: str, path: str | Path) -> Path:
    """Write the method's files, the tokenizer and `adaptlab.json` atomically to `path`."""
    path = Path(path)
    with replacing(path, directory=True) as tmp:
        method.save(model, tmp)
        tokenizer.save_pretrained(tmp)
        meta = {"method": method.name, "base_model": base_model, "method_config": cfg.model_dump()}
        (tmp / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2))
    return path


def read_artifact_meta(path: str | Path) -> dict:
    meta_file = Path(path) / ARTIFACT_FILE
    if not meta_file.exists():
        raise FileNotFoundError(f"{path} is not an adaptlab artifact (no {ARTIFACT_FILE})")
    return json.loads(meta_file.read_text())


def load_artifact(path: str | Path, dtype: str = "auto", device: str = "auto") -> Artifact:
    """Rebuild base model + method from an artifact folder written by `save_artifact`."""
    from adaptlab.models import load_model

    meta = read_artifact_meta(path)
    method = get_method(meta["method"])
    cfg = MethodConfig(**meta["method_config"])
    base = load_model(meta["base_model"], dtype=dtype, device=device)
    model = method.load(base.model, Path(path))
    model.eval()
    return Artifact(model=model, tokenizer=base.tokenizer, method=method, method_config=cfg, base_model=meta["base_model"])


def resolve_artifact(path: str | Path) -> Path:
    """An artifact folder as given, or a run folder's `final/` artifact."""
    path = Path(path)
    if not (path / ARTIFACT_FILE).exists() and (path / "final").is_dir():
        return path / "final"
    return path


def load_adapted(model: str, adapter: str | Path | None, dtype: str = "auto", device: str = "auto"):
    """(model, tokenizer) that answer: `model` alone, an adaptlab artifact or run folder (its own base),
    or `model` with a plain peft adapter folder (adapter_config.json)."""
    from adaptlab.models import load_model

    if adapter is None:
        loaded = load_model(model, dtype=dtype, device=device)
        return loaded.model, loaded.tokenizer
    path = resolve_artifact(adapter)
    if (path / ARTIFACT_FILE).exists():
        art = load_artifact(path, dtype=dtype, device=device)
        return art.model, art.tokenizer
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        loaded = load_model(model, dtype=dtype, device=device)
        return PeftModel.from_pretrained(loaded.model, str(path)).eval(), loaded.tokenizer
    raise FileNotFoundError(f"{adapter} is neither an adaptlab artifact ({ARTIFACT_FILE}), a run folder with "
                            "final/, nor a peft adapter (adapter_config.json)")
