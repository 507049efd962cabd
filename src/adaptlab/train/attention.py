"""Packed-row attention as one causal attention per packed sequence, not one masked attention per row.

A packed row holds several sequences; transformers' SDPA path attends over the whole row with a block-diagonal
causal mask built from the position-id restarts, so a row of sequences of lengths L_i costs (sum L_i)^2 score
flops. Attending per sequence costs sum L_i^2 and needs no mask: for three GSM8K examples in a row of 512, about
a third. It is the same maths: every query attends to exactly the keys of its own sequence at or before it (the
idea of FlashAttention's variable-length kernels, Dao 2023, arXiv:2307.08691). On CPU, short sequences take
SDPA's matmul path (`backend_for`): PyTorch's CPU flash kernel costs about as much per token for a 128-token
sequence as for a 512-token row; the bound is lower in bf16, where the matmul path keeps fp32 scores.

The training objectives pass each row's sequence lengths (`Batch.segments`) as the `packed_segments` keyword;
any other call (padded batches, generation with a KV cache) goes to transformers' SDPA unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "adaptlab_packed_sdpa"
# longest sequence attended by SDPA's matmul path on CPU, per compute dtype (see `backend_for`)
MATH_MAX = {torch.float32: 256, torch.bfloat16: 128, torch.float16: 128}


def packed_sdpa(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                dropout: float = 0.0, scaling: float | None = None, is_causal: bool | None = None,
                packed_segments: tuple[tuple[int, ...], ...] | None = None, **kwargs) -> tuple[Tensor, None]:
    """transformers' attention signature ([B, heads, T, D] in, [B, T, heads, D] out); per-sequence causal SDPA
    when `packed_segments` gives every row's sequence lengths, else plain SDPA with the mask."""
    if packed_segments is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    rows = []
    # `split`, not slicing: its backward concatenates the pieces' gradients, where every slice's backward
    # would write a zero-filled full-size gradient to be summed
    for q, k, v, lengths in zip(query.split(1), key.split(1), value.split(1), packed_segments, strict=True):
        parts = []
        for qs, ks, vs in zip(q.split(lengths, 2), k.split(lengths, 2), v.split(lengths, 2)):
            with sdpa_kernel(backend_for(qs)):
                parts.append(sdpa_attention_forward(module, qs, ks, vs, None, dropout=dropout, scaling=scaling,
                                                    is_causal=True)[0])
        rows.append(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
    return torch.cat(rows, dim=0) if len(rows) > 1 else rows[0], None


def backend_for(query: Tensor) -> list[SDPBackend]:
    """SDPA kernels for one sequence. On CPU the flash kernel's cost grows about linearly with the length down to
    short sequences (its backward has a large fixed part): up to `MATH_MAX` tokens the plain matmul path is
    faster (fp32: 1.5x for four 128-token sequences, fwd + bwd, 1 thread, measured on a loaded machine) and its
    [heads x L x L] scores stay small. In bf16 the matmul path upcasts q, k, v to fp32 (the key/value heads
    repeated) and keeps fp32 scores for backward: 4.1 MB per 200-token sequence and layer at 9 heads of 64,
    against the flash kernel's 0.6 MB (q, k, v, out, log-sum-exp), and it is no faster from about 200 tokens
    (fwd + bwd, 1 thread: 8.5 ms against 7.1 ms at 256 tokens, 2.2 against 3.3 at 128)."""
    if query.device.type == "cpu" and query.shape[2] <= MATH_MAX.get(query.dtype, 0):
        return [SDPBackend.MATH]
    return [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]


def use_packed_attention(model: nn.Module) -> bool:
    """Switch a model on transformers' SDPA to `packed_sdpa` (masks for other calls are still SDPA's); returns
    whether it switched (a model on eager or flash attention keeps its own)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(inner.config, "_attn_implementation", None) != "sdpa":
        return False
    AttentionInterface.register(NAME, packed_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    inner.set_attn_implementation(NAME)
    return True


def segment_kwargs(segments: tuple[tuple[int, ...], ...] | None) -> dict:
    """The keyword the decoder forwards to `packed_sdpa` (nothing for batches that are not packed)."""
    return {} if segments is None else {"packed_segments": segments}
