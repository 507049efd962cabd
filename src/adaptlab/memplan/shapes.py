"""A decoder-only model's shape and parameter counts, read from its config.json alone (no weights).

A model reference resolves, in this order, to a config dict: a config shipped with adaptlab
(`memplan/configs/<name>.json`, copies of the public config.json files), the builtin model's
config, a path to a config.json or to a model directory holding one, or a hub id (only config.json
is fetched, through huggingface_hub; offline that is a clear error, never a hang).

Parameters of a Llama-family decoder (Llama, Mistral, Qwen2, Qwen3) with hidden size h, q = heads x
head_dim, kv = kv_heads x head_dim, intermediate size i, L layers and vocabulary V:

    per layer:  q_proj h*q, k_proj h*kv, v_proj h*kv, o_proj q*h, gate/up h*i each, down i*h,
                two RMSNorm weights of h (Qwen3 adds q_norm / k_norm of head_dim), biases where set
                (Qwen2: q, k, v; `attention_bias`, `mlp_bias`)
    model:      embedding V*h, final norm h, lm_head V*h unless tied to the embedding
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")
STORED = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


class ModelConfigError(ValueError):
    """A model reference that does not resolve to a config this planner can read."""


@dataclass(frozen=True)
class Linear:
    in_features: int
    out_features: int
    bias: bool = False

    @property
    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class ModelShape:
    """What the memory and time model needs to know about a model."""

    name: str
    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    linears: dict[str, Linear] = field(default_factory=dict)   # one decoder layer's projections by name
    layer_norm_params: int = 0                                  # norm weights inside one layer
    stored_dtype: str = "bf16"                                  # the checkpoint's dtype (config's torch_dtype)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        return sum(lin.params for lin in self.linears.values()) + self.layer_norm_params

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        """The lm_head's own parameters (0 when tied to the embedding)."""
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def total_params(self) -> int:
        return self.layers * self.layer_params + self.embedding_params + self.head_params + self.hidden

    @property
    def linear_params(self) -> int:
        """Weights of every nn.Linear the quantizing methods store low-bit (all projections, untied lm_head)."""
        return self.layers * sum(lin.in_features * lin.out_features for lin in self.linears.values()) + self.head_params

    @property
    def matmul_params(self) -> int:
        """Weights a token multiplies through (every projection and the lm_head, tied or not): the N of 2N flops."""
        return self.layers * sum(lin.in_features * lin.out_features for lin in self.linears.values()) + self.vocab * self.hidden


def shape_from_config(config: dict, name: str = "model") -> ModelShape:
    """Read a transformers config.json dict; an architecture outside `SUPPORTED` or a missing field is a clear error."""
    kind = config.get("model_type")
    if kind not in SUPPORTED:
        raise ModelConfigError(f"{name}: model_type {kind!r} is not supported by the planner; supported: {', '.join(SUPPORTED)}")
    try:
        h, i, heads = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"]
        layers, vocab = config["num_hidden_layers"], config["vocab_size"]
    except KeyError as e:
        raise ModelConfigError(f"{name}: config.json has no field {e.args[0]!r}") from None
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or h // heads
    q, kv = heads * head_dim, kv_heads * head_dim
    attn_bias = kind == "qwen2" or bool(config.get("attention_bias"))
    mlp_bias = bool(config.get("mlp_bias"))
    linears = {"q_proj": Linear(h, q, attn_bias), "k_proj": Linear(h, kv, attn_bias), "v_proj": Linear(h, kv, attn_bias),
               "o_proj": Linear(q, h, bool(config.get("attention_bias"))),
               "gate_proj": Linear(h, i, mlp_bias), "up_proj": Linear(h, i, mlp_bias), "down_proj": Linear(i, h, mlp_bias)}
    norms = 2 * h + (2 * head_dim if kind == "qwen3" else 0)
    tied = config.get("tie_word_embeddings", False)  # the default of every supported config class
    return ModelShape(name=name, model_type=kind, hidden=h, intermediate=i, layers=layers, heads=heads,
                      kv_heads=kv_heads, head_dim=head_dim, vocab=vocab, tied=bool(tied), linears=linears,
                      layer_norm_params=norms, stored_dtype=STORED.get(config.get("torch_dtype") or config.get("dtype"), "bf16"))


def shipped_configs() -> dict[str, Path]:
    """Public model configs that ship with adaptlab, by name (`qwen2.5-0.5b`, `llama-3.1-8b`, ...)."""
    root = files("adaptlab.memplan") / "configs"
    return {Path(p.name).stem: Path(str(p)) for p in root.iterdir() if p.name.endswith(".json")}


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def _hub_config(repo_id: str) -> dict:
    """Fetch only config.json of a hub model; offline or unknown ids are clear errors."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return _read(Path(hf_hub_download(repo_id, "config.json")))
    except LocalEntryNotFoundError:
        raise ModelConfigError(f"{repo_id}: config.json is not cached and the hub cannot be reached; pass a shipped "
                               f"config ({', '.join(sorted(shipped_configs()))}) or a path to a config.json") from None
    except HfHubHTTPError as e:
        raise ModelConfigError(f"{repo_id}: the hub refused config.json ({e})") from None


def load_shape(ref: str) -> ModelShape:
    """The shape of `ref`: a shipped config name, the builtin model, a config.json, a model directory or a hub id."""
    from adaptlab.models.registry import BUILTIN_MODELS, resolve

    shipped = shipped_configs()
    if ref in shipped:
        return shape_from_config(_read(shipped[ref]), ref)
    if ref in BUILTIN_MODELS:
        return shape_from_config(_read(Path(resolve(ref)[0]) / "config.json"), ref)
    path = Path(ref).expanduser()
    if path.is_file():
        return shape_from_config(_read(path), path.parent.name or ref)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelConfigError(f"{path} has no config.json")
        return shape_from_config(_read(path / "config.json"), path.name)
    if ref.count("/") == 1 and not ref.startswith((".", "/")):
        return shape_from_config(_hub_config(ref), ref)
    raise ModelConfigError(f"unknown model {ref!r}: use a shipped config ({', '.join(sorted(shipped))}), the builtin "
                           f"{', '.join(BUILTIN_MODELS)}, a path to config.json or a model directory, or a hub id (org/name)")
