"""Frozen quantized layers: linear and embedding modules whose weight lives as NF4 or group-wise codes.

`QuantLinear` computes y = x W~^T + b with W~ = dequantize(codes) in the input's dtype (bf16 when the
model is bf16). W~ is rebuilt in the backward pass rather than saved, so no dense copy of a frozen weight
outlives one layer call: the base stays at ~4 bits per parameter during training.

`quantize_model` swaps a model's nn.Linear / nn.Embedding layers for these (one layer at a time, so the
dense weights are freed as it goes); `dequantize_model` swaps them back to plain layers for a merged export.
A tied lm_head becomes a `TiedQuantLinear` that reads the embedding's codes (stored once).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from adaptlab.quant.groupwise import GroupTensor, group_from_buffers
from adaptlab.quant.nf4 import NF4Tensor, nf4_from_buffers

QuantizedTensor = NF4Tensor | GroupTensor
FORMATS: dict[str, Callable[[dict, dict], QuantizedTensor]] = {"nf4": nf4_from_buffers, "groupwise": group_from_buffers}
# (module name, dense weight) -> codes, or None to keep that layer dense
Quantizer = Callable[[str, torch.Tensor], QuantizedTensor | None]


class _DequantMatmul(torch.autograd.Function):
    """x W~^T with W~ dequantized again in backward instead of being kept alive between the passes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: QuantLinear) -> torch.Tensor:
        ctx.layer = layer
        return F.linear(x, layer.quantized().dequantize(x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad @ ctx.layer.quantized().dequantize(grad.dtype), None


class _QuantStorage(nn.Module):
    """Holds a quantized tensor's buffers (so .to(device) and state_dict see them) and rebuilds it on demand."""

    def _store(self, q: QuantizedTensor) -> None:
        self.qmeta = q.meta()
        self._buffer_names = list(q.buffers())
        for name, t in q.buffers().items():
            self.register_buffer(name, t)

    def _apply(self, fn, recurse: bool = True):
        """`.to(device)` moves the codes; `.to(dtype)` must not recast them (nor the fp32 constants)."""
        before = {k: self._buffers[k] for k in self._buffer_names}
        super()._apply(fn, recurse)
        for k, t in before.items():
            if self._buffers[k].dtype != t.dtype:
                self._buffers[k] = t.to(self._buffers[k].device)
        return self

    def quantized(self) -> QuantizedTensor:
        return FORMATS[self.qmeta["format"]]({k: getattr(self, k) for k in self._buffer_names}, self.qmeta)

    @property
    def weight(self) -> torch.Tensor:
        """A dense, read-only copy of W~ in the compute dtype (for code that reads `.weight`); writes are lost."""
        return self.quantized().dequantize(self.compute_dtype)

    def quantized_numel(self) -> int:
        return self.quantized().numel()

    def quantized_bytes(self) -> int:
        return self.quantized().nbytes()


class QuantLinear(_QuantStorage):
    """A frozen linear layer stored quantized; computes in the input's dtype."""

    def __init__(self, q: QuantizedTensor, bias: torch.Tensor | None = None, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self._store(q)
        self.compute_dtype = dtype
        self.out_features, self.in_features = q.shape
        # peft sizes LoRA layers around a non-nn.Linear base from these names (its QuantLinear convention)
        self.outfeatures, self.infeatures = q.shape
        self.bias = nn.Parameter(bias.detach(), requires_grad=False) if bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _DequantMatmul.apply(x, self)
        return y + self.bias.to(y.dtype) if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.qmeta}"


class QuantEmbedding(_QuantStorage):
    """A frozen embedding table stored quantized; a lookup dequantizes only the rows it reads."""

    def __init__(self, q: QuantizedTensor, dtype: torch.dtype, padding_idx: int | None = None):
        super().__init__()
        self._store(q)
        self.num_embeddings, self.embedding_dim = q.shape
        self.padding_idx = padding_idx
        self.compute_dtype = dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.quantized().dequantize_rows(ids, self.compute_dtype)


class TiedQuantLinear(nn.Module):
    """An output projection tied to a `QuantEmbedding`: it reads the embedding's codes, stored once."""

    def __init__(self, embedding: QuantEmbedding):
        super().__init__()
        object.__setattr__(self, "source", embedding)  # not a submodule: its buffers belong to the embedding
        self.out_features, self.in_features = embedding.num_embeddings, embedding.embedding_dim
        self.bias = None

    def quantized(self) -> QuantizedTensor:
        return self.source.quantized()

    @property
    def weight(self) -> torch.Tensor:
        return self.source.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _DequantMatmul.apply(x, self)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, child = name.rpartition(".")
    return (model.get_submodule(path) if path else model), child


def _is_tied(model: nn.Module) -> bool:
    out, emb = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and getattr(out, "weight", None) is not None and out.weight is getattr(emb, "weight", None)


def quantizable_linears(model: nn.Module) -> list[str]:
    """Names of the nn.Linear layers `quantize_model` would quantize (a tied lm_head is handled with the embedding)."""
    tied = _is_tied(model)
    out = model.get_output_embeddings()
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not (tied and m is out)]


@torch.no_grad()
def quantize_model(model: nn.Module, quantize: Quantizer, embeddings: bool = True) -> nn.Module:
    """Replace every nn.Linear (and the input embedding, plus a tied lm_head) with its quantized version, in place."""
    tied = _is_tied(model)
    dtype = next(model.parameters()).dtype
    for name in quantizable_linears(model):
        parent, child = _parent(model, name)
        layer = getattr(parent, child)
        if (q := quantize(name, layer.weight)) is not None:
            setattr(parent, child, QuantLinear(q, layer.bias, dtype))
    emb = model.get_input_embeddings()
    if embeddings and isinstance(emb, nn.Embedding):
        name = next(n for n, m in model.named_modules() if m is emb)
        if (q := quantize(name, emb.weight)) is not None:
            qemb = QuantEmbedding(q, dtype, emb.padding_idx)
            model.set_input_embeddings(qemb)
            if tied:
                model.set_output_embeddings(TiedQuantLinear(qemb))
    _own_memory(model)
    return model


def _own_memory(model: nn.Module) -> None:
    """Copy the tensors left dense (norms, biases, unquantized layers) into memory of their own. transformers
    loads safetensors as views of a memory map, and while any tensor views it the whole mapped file (the
    dense model, touched page by page while quantizing) stays mapped and counted in the process's RSS."""
    for module in model.modules():
        for p in module.parameters(recurse=False):
            p.data = p.data.clone()
        if isinstance(module, _QuantStorage):
            continue   # its code buffers were just computed, not loaded
        for name, b in module.named_buffers(recurse=False):
            module._buffers[name] = b.clone()


@torch.no_grad()
def dequantize_model(model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """Replace every quantized layer with a frozen nn.Linear / nn.Embedding holding W~ in `dtype`, in place.

    `dtype` None: each layer's compute dtype (the dtype the model had when it was quantized).
    """
    for name, module in list(model.named_modules()):
        if isinstance(module, QuantLinear):
            dt = dtype or module.compute_dtype
            dense = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None,
                              device=module.qweight.device, dtype=dt)
            dense.weight.copy_(module.quantized().dequantize(dt))
            if module.bias is not None:
                dense.bias.copy_(module.bias)
            parent, child = _parent(model, name)
            setattr(parent, child, dense.requires_grad_(False))
    emb = model.get_input_embeddings()
    if isinstance(emb, QuantEmbedding):
        dt = dtype or emb.compute_dtype
        dense_emb = nn.Embedding(emb.num_embeddings, emb.embedding_dim, emb.padding_idx, device=emb.qweight.device, dtype=dt)
        dense_emb.weight.copy_(emb.quantized().dequantize(dt))
        model.set_input_embeddings(dense_emb.requires_grad_(False))
        if isinstance(model.get_output_embeddings(), TiedQuantLinear):
            head = nn.Linear(emb.embedding_dim, emb.num_embeddings, bias=False, device=emb.qweight.device, dtype=dt)
            head.weight = dense_emb.weight
            model.set_output_embeddings(head)
    return model
