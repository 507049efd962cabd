"""A tiny randomly initialised Llama with the builtin tokenizer, for unit tests (seconds, not minutes)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


def tiny_llama(tokenizer: PreTrainedTokenizerBase | None = None, *, hidden: int = 64, layers: int = 2,
               heads: int = 4, kv_heads: int = 2, intermediate: int = 128, seed: int = 0) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """Return (model, tokenizer): a Llama of a few M parameters sharing the builtin model's tokenizer."""
    from adaptlab.models.registry import load_tokenizer

    tokenizer = tokenizer or load_tokenizer("smollm2-135m")
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    return model, tokenizer
