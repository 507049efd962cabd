"""Export and reload a model whose layers are stored quantized (e.g. a merged QA-LoRA model).

Format (a folder):

    config.json             the transformers config of the architecture
    model.safetensors       every tensor of the model's state dict:
                              quantized layers: <module>.qweight (uint8, packed codes) and its constants
                                group-wise: <module>.scales [out, in/L], <module>.zeros [out, in/L]
                                            (W~ = scales * (codes - zeros); codes packed 8 per `bits` bytes,
                                            little-endian bit order, INT4 = low nibble first)
                                nf4:        <module>.absmax, .absmax_scale, .absmax_offset (bitsandbytes layout)
                              other layers: their float weights (norms), as usual
                            safetensors metadata: "adaptlab_quant" = JSON {module name: {"format", "shape", ...}}
                            (a tied lm_head has no tensors: it reads the embedding's codes, as the config says)
    tokenizer files         when a tokenizer is given

`load_quantized` rebuilds the architecture from config.json, swaps in the quantized layers and loads the
tensors; the result runs like any transformers model (generate, eval, serve).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from adaptlab.quant.layers import FORMATS, QuantEmbedding, QuantLinear, quantize_model

WEIGHTS = "model.safetensors"
META_KEY = "adaptlab_quant"


def is_quantized_export(path: str | Path) -> bool:
    """True for a folder written by `save_quantized`."""
    f = Path(path) / WEIGHTS
    if not f.exists():
        return False
    with safe_open(str(f), "pt") as handle:
        return META_KEY in (handle.metadata() or {})


def save_quantized(model: nn.Module, path: str | Path, tokenizer=None) -> Path:
    """Write config.json, model.safetensors (packed codes + constants + float tensors) and the tokenizer."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    layout = {n: m.qmeta for n, m in model.named_modules() if isinstance(m, (QuantLinear, QuantEmbedding))}
    if not layout:
        raise ValueError("the model has no quantized layers; save it with save_pretrained instead")
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    model.config.save_pretrained(path)
    save_file(tensors, path / WEIGHTS, metadata={META_KEY: json.dumps(layout)})
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def load_quantized(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model written by `save_quantized`, on `device`, computing in the dtype its float tensors have."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    with safe_open(str(path / WEIGHTS), "pt") as handle:
        layout = json.loads(handle.metadata()[META_KEY])
    tensors = load_file(path / WEIGHTS, device=str(device))
    float_dtypes = {t.dtype for k, t in tensors.items() if t.is_floating_point() and k.rsplit(".", 1)[0] not in layout}
    dtype = torch.bfloat16 if torch.bfloat16 in float_dtypes else torch.float32
    config = AutoConfig.from_pretrained(path)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device)

    def saved(name: str, w: torch.Tensor):
        if name not in layout:
            return None  # a layer that was exported dense
        buffers = {k.removeprefix(name + "."): v for k, v in tensors.items() if k.rsplit(".", 1)[0] == name}
        return FORMATS[layout[name]["format"]](buffers, layout[name])

    quantize_model(model, saved)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model
