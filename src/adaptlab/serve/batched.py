"""One forward pass for a batch whose rows each run their own adapter (LoRA, DoRA or IA3) of one base.

peft's mixed batch (`adapter_names=`) loops over the adapters inside every layer (index_select, forward,
index_put per adapter) and cannot route DoRA or IA3 rows at all. Here each adapted linear layer computes,
for row b with adapter a = a(b) (a = 0 is the bare base),

    y_b = o_a * (W (i_a * x_b) + s_a B_a A_a x_b)

* LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685): o = i = 1;
* DoRA (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation", arXiv:2402.09353):
  o_a = m_a / ||W + s_a B_a A_a||_c, the magnitude over the column norm, a constant at inference;
* IA3 (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
  Learning", arXiv:2205.05638): o_a = l_a (attention outputs) or i_a = l_a (feed-forward inputs), no B A.

The low-rank factors of every adapter are stacked, A = [A_1; ...; A_n] (R = r_1 + ... + r_n rows) and
B = [s_1 B_1 | ... | s_n B_n], so x A^T is one matmul for every row, a 0/1 mask keeps each row's own
adapter's R-columns, and one addmm adds (x A^T * M) B^T: three small ops per layer whatever the mix
(the batched LoRA of Punica, Chen et al. 2023, arXiv:2310.18547, and S-LoRA, Sheng et al. 2023,
arXiv:2311.03285, made dense over the stacked ranks: R extra columns, cheap while R is small against
the layer width). A is stacked under the base weight, so x [W; A]^T is a single matmul, and the update
costs two small ops per layer. A batch of base rows only skips every adapter op.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from peft.tuners.ia3.layer import Linear as IA3Linear
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.variants import DoraLinearVariant
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from adaptlab.methods.multi import BASE


class Routing:
    """Which adapter each row of the current batch runs (index 0: the base), shared by every layer."""

    def __init__(self) -> None:
        self.index = torch.zeros(0, dtype=torch.long)
        self.present: frozenset[int] = frozenset()
        self._masks: dict[int, torch.Tensor] = {}

    def set(self, index: list[int], device: torch.device) -> None:
        self.index = torch.tensor(index, dtype=torch.long, device=device)
        self.present = frozenset(index)
        self._masks = {}

    def mask(self, owner: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """[batch, 1, R]: 1 where a stacked rank column belongs to the row's adapter; one per layout and batch."""
        key = id(owner)
        if key not in self._masks:
            self._masks[key] = (self.index[:, None] == owner[None, :]).to(dtype)[:, None, :]
        return self._masks[key]


class RowLinear(nn.Module):
    """A linear layer whose update depends on the row: see the module docstring for the formula."""

    def __init__(self, base: nn.Linear, routing: Routing, low_rank: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
                 out_scale: torch.Tensor | None, in_scale: torch.Tensor | None, users: frozenset[int]):
        super().__init__()
        self.base, self.routing, self.users = base, routing, users
        # A [R, in], B [out, R] (scaling folded in), owner [R]: adapter index of each stacked rank column
        self.low_rank = low_rank
        self.out_scale, self.in_scale = out_scale, in_scale   # [adapters + 1, out | in]; row 0 (base) is ones
        self.fused: tuple[torch.Tensor, torch.Tensor | None] | None = None
        if low_rank is not None and in_scale is None:
            # [W; A] gives the base output and every adapter's x A^T in one matmul (one op less per layer:
            # on a small model the step is bound by the number of ops). The base's weight becomes the top
            # rows of it: the same Parameter and values, nothing stored twice.
            a, weight = low_rank[0], base.weight
            fused = torch.cat([weight.data, a])
            weight.data = fused[: weight.shape[0]]
            bias = None if base.bias is None else torch.cat([base.bias.data, base.bias.new_zeros(a.shape[0])])
            self.fused = (fused, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        routing = self.routing
        if not routing.present & self.users:
            return self.base(x)
        low = None
        if self.fused is not None:
            full = F.linear(x, *self.fused)
            h, low = full[..., : self.base.out_features], full[..., self.base.out_features:]
        else:
            h = self.base(x * self.in_scale[routing.index][:, None, :] if self.in_scale is not None else x)
            if self.low_rank is not None:
                low = x @ self.low_rank[0].T
        if low is not None:
            _, b, owner = self.low_rank
            low = low * routing.mask(owner, x.dtype)
            h = torch.addmm(h.reshape(-1, h.shape[-1]), low.reshape(-1, low.shape[-1]), b.T).view(h.shape)
        if self.out_scale is not None:
            h = h * self.out_scale[routing.index][:, None, :]
        return h


class RowAdapters:
    """A view of a peft model whose forward routes each row to its own adapter in one pass.

    Shares every weight with the peft model (nothing of the base is copied). Adapters with a layer this
    path does not cover (embeddings, quantized bases, DoRA over a biased base, other LoRA variants) are left
    out: `covers(name)` is False and the caller runs them through peft one adapter at a time."""

    def __init__(self, peft_model):
        names = [n for n in peft_model.peft_config if n != BASE]
        tuners = {k: m for k, m in peft_model.base_model.model.named_modules() if isinstance(m, BaseTunerLayer)}
        self.names = [n for n in names if all(_supported(m, n) for m in tuners.values())]
        self.index = {BASE: 0, **{n: i + 1 for i, n in enumerate(self.names)}}
        self.routing = Routing()
        inner = peft_model.base_model.model
        shared = {id(t): t for t in [*inner.parameters(), *inner.buffers()]}
        self.model = copy.deepcopy(inner, shared)   # the module tree only: tensors stay shared
        layouts: dict[tuple, torch.Tensor] = {}
        for name, module in list(self.model.named_modules()):
            if isinstance(module, BaseTunerLayer):
                parent, _, child = name.rpartition(".")
                setattr(self.model.get_submodule(parent), child, self._row_linear(module, layouts))

    def covers(self, adapter: str) -> bool:
        return adapter in self.index

    def __call__(self, adapter_names: list[str], **inputs):
        """The model's forward where row i runs adapter_names[i] (BASE: no adapter)."""
        self.routing.set([self.index[n] for n in adapter_names], inputs["input_ids"].device)
        return self.model(**inputs)

    def _row_linear(self, layer: BaseTunerLayer, layouts: dict[tuple, torch.Tensor]) -> nn.Module:
        base = layer.get_base_layer()
        weight = base.weight
        rows = len(self.names) + 1
        a_parts, b_parts, owner, users = [], [], [], set()
        out_scale = in_scale = None
        for name in self.names:
            i = self.index[name]
            if isinstance(layer, LoraLinear) and name in layer.lora_A:
                users.add(i)
                a, b, s = layer.lora_A[name].weight, layer.lora_B[name].weight, layer.scaling[name]
                a_parts.append(a.float())
                b_parts.append(s * b.float())
                owner += [i] * a.shape[0]
                if name in layer.lora_variant:   # DoRA (the only variant `_supported` lets through)
                    norm = torch.linalg.norm(weight.float() + s * (b.float() @ a.float()), dim=1)
                    out_scale = _ones(out_scale, rows, weight.shape[0])
                    out_scale[i] = layer.lora_magnitude_vector[name].weight.float() / norm
            elif isinstance(layer, IA3Linear) and name in layer.ia3_l:
                users.add(i)
                if layer.is_feedforward:
                    in_scale = _ones(in_scale, rows, weight.shape[1])
                    in_scale[i] = layer.ia3_l[name].float().flatten()
                else:
                    out_scale = _ones(out_scale, rows, weight.shape[0])
                    out_scale[i] = layer.ia3_l[name].float().flatten()
        low_rank = None
        if a_parts:
            key = tuple(owner)
            layouts.setdefault(key, torch.tensor(owner, device=weight.device))
            low_rank = (torch.cat(a_parts).to(weight.dtype), torch.cat(b_parts, dim=1).to(weight.dtype), layouts[key])
        cast = lambda t: None if t is None else t.to(weight.dtype)
        return RowLinear(base, self.routing, low_rank, cast(out_scale), cast(in_scale), frozenset(users))


def _ones(t: torch.Tensor | None, rows: int, width: int) -> torch.Tensor:
    return torch.ones(rows, width) if t is None else t


def _supported(layer: BaseTunerLayer, name: str) -> bool:
    """Whether `layer`'s part of adapter `name` has the form y = o * (W (i * x) + s B A x) over a plain linear."""
    base = layer.get_base_layer()
    plain = type(base) is nn.Linear
    if isinstance(layer, LoraLinear):
        if name not in layer.lora_A:
            return True
        variant = layer.lora_variant.get(name)
        dora_ok = variant is None or (isinstance(variant, DoraLinearVariant) and base.bias is None)
        return plain and not layer.fan_in_fan_out and not layer.lora_bias.get(name) and dora_ok
    if isinstance(layer, IA3Linear):   # a bias is scaled with the output, as in peft: o * (W x + b)
        return name not in layer.ia3_l or plain
    return not any(name in getattr(layer, attr, {}) for attr in layer.adapter_layer_names)
