"""Write a (merged) Llama-family model as a GGUF file for llama.cpp and Ollama, with the `gguf` package.

Layout follows llama.cpp's `convert_hf_to_gguf.py` for the `llama` architecture: tensor names from gguf's
name map (`blk.N.attn_q.weight`, ...), q_proj / k_proj rows permuted from transformers' rotary layout to
GGUF's interleaved one (per head: rows [x0, x1 | y0, y1] -> [x0, y0, x1, y1]), the tokenizer as
`tokenizer.ggml.*` (tokens, token types, merges, special ids, chat template). Weights are F16 or Q8_0
(blocks of 32 values: one fp16 scale d = max|x| / 127 and 32 int8 codes q = round(x / d)); norms stay F32.

Every tensor of the model is written, so an adapter that touched the embedding or lm_head is exported
with its update merged in, never dropped (llama.cpp's LoRA converter skips such layers, its issue 9065).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gguf
import numpy as np
import torch
from torch import nn

from adaptlab.atomic import replacing

QUANTS = {"f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
          "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0)}
ARCHITECTURES = {"LlamaForCausalLM"}


def _permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """transformers' rotary half-split rows -> GGUF's interleaved pairs (llama.cpp `LlamaModel.permute`)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensors(model: nn.Module) -> dict[str, np.ndarray]:
    """GGUF name -> fp32 array for every weight (tied lm_head left out: llama.cpp reuses token_embd)."""
    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    heads = {"q_proj": cfg.num_attention_heads, "k_proj": cfg.num_key_value_heads}
    out = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        if "rotary_emb" in name:
            continue
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ValueError(f"no GGUF name for tensor {name}; only Llama-family models export to GGUF")
        kind = name.split(".")[-2]
        t = t.detach().float().cpu()
        out[target] = (_permute(t, heads[kind]) if kind in heads else t).numpy()
    return out


def _tokenizer(writer: gguf.GGUFWriter, tokenizer, pre: str) -> None:
    """tokenizer.ggml.*: BPE tokens and types, merges, special ids and the chat template."""
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    special = set(tokenizer.all_special_ids)
    added = set(tokenizer.get_added_vocab().values())
    tokens, types = [], []
    for i in range(len(by_id)):
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.USER_DEFINED if i in added
                     else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        gguf.SpecialVocab(tmp, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer)


def _hparams(writer: gguf.GGUFWriter, cfg, file_type) -> None:
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(file_type)


def save_gguf(model: nn.Module, tokenizer, path: str | Path, quant: str = "f16", name: str = "adaptlab",
              tokenizer_pre: str = "default") -> Path:
    """Write `model` (a plain, merged transformers Llama) to the GGUF file `path` (atomically)."""
    if type(model).__name__ not in ARCHITECTURES:
        raise ValueError(f"GGUF export supports {sorted(ARCHITECTURES)}, not {type(model).__name__}; "
                         "merge the adapter first and export a Llama-family model")
    if quant not in QUANTS:
        raise ValueError(f"unknown GGUF quant {quant!r}; choose one of: {', '.join(QUANTS)}")
    qtype, file_type = QUANTS[quant]
    path = Path(path)
    with replacing(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), "llama")
        writer.add_name(name)
        _hparams(writer, model.config, file_type)
        _tokenizer(writer, tokenizer, tokenizer_pre)
        for target, array in _tensors(model).items():
            if array.ndim == 1 or array.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
                writer.add_tensor(target, array.astype(np.float32))
            else:
                writer.add_tensor(target, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def load_gguf(path: str | Path) -> tuple[nn.Module, object]:
    """Read a GGUF file back with transformers' own GGUF loader (dequantized to fp32): (model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
