"""4-bit NormalFloat (NF4) with blockwise absmax scaling and double quantization, in plain torch.

Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", arXiv:2305.14314, sec. 3:

    NF4 code book q_i: 16 values, quantiles of N(0, 1) rescaled to [-1, 1] with an exact zero
    (the paper's appendix E lists them; `NF4_CODE` below).
    blockwise absmax (block B1 = 64):   c_b = max_{j in b} |W_j|,   Q_j = argmin_i |W_j / c_b - q_i|
    dequantize:                          W_j ~= q_{Q_j} * c_b
    double quantization:                 the fp32 constants c_b, minus their mean, are quantized again to
                                         8 bits in blocks of B2 = 256 with fp32 second-level constants.
    bits per parameter = 4 + 8 / 64 + 32 / (64 * 256) = 4.127   (4.5 without double quantization)

The layout follows bitsandbytes (`bitsandbytes.functional.quantize_4bit(quant_type="nf4",
compress_statistics=True)`) so the round trip is bit-identical to it: two codes per byte, the first
value of a pair in the high nibble; ties round to the lower code (`torch.bucketize` on the midpoints);
the 8-bit code for the constants is bitsandbytes' signed dynamic map (Dettmers 2015, arXiv:1511.04561).
This module runs wherever torch runs (CPU, CUDA) and is what adaptlab uses where bitsandbytes does not.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# QLoRA paper, appendix E (the same float32 values bitsandbytes ships)
NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
], dtype=torch.float32)

BLOCKSIZE = 64
# bitsandbytes' CPU backend warns on import that an optional hub kernel (a 4-bit GEMM) is missing;
# adaptlab only uses its dequantization, so the warning is noise (peft imports bitsandbytes too)
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
ABSMAX_BLOCKSIZE = 256


def bits_per_param(blocksize: int = BLOCKSIZE, double_quant: bool = True,
                   absmax_blocksize: int = ABSMAX_BLOCKSIZE) -> float:
    """4 bits per code plus the per-block constants: 4 + 8/B1 + 32/(B1*B2), or 4 + 32/B1 without double quant."""
    if double_quant:
        return 4 + 8 / blocksize + 32 / (blocksize * absmax_blocksize)
    return 4 + 32 / blocksize


@functools.cache
def dynamic_map() -> torch.Tensor:
    """The signed 8-bit dynamic code (256 sorted values in [-1, 1]) used for the absmax constants.

    A dynamic exponent (powers of ten, 10^-6 .. 10^0) with a linear fraction whose width shrinks as the
    exponent grows; identical to `bitsandbytes.functional.create_dynamic_map(signed=True)`.
    """
    data: list[float] = []
    for i in range(7):
        boundaries = torch.linspace(0.1, 1, 2**i + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0.0, 1.0]
    return torch.tensor(sorted(data), dtype=torch.float32)


def _midpoints(code: torch.Tensor) -> torch.Tensor:
    return (code[:-1] + code[1:]) / 2


def quantize_blockwise(x: torch.Tensor, code: torch.Tensor, blocksize: int,
                       chunk_blocks: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest-code indices of x / absmax per block of `blocksize` (flattened; a short last block allowed).

    Returns (indices uint8 of x.numel(), absmax fp32 per block). Works through `chunk_blocks` blocks at a
    time so the fp32 temporaries stay small next to the weight being quantized.
    """
    flat = x.reshape(-1)
    n = flat.numel()
    bounds = _midpoints(code.to(x.device))
    step = chunk_blocks * blocksize
    idx, absmax = torch.empty(n, dtype=torch.uint8, device=x.device), []
    for start in range(0, n, step):
        part = flat[start:start + step].float()
        blocks = F.pad(part, (0, -part.numel() % blocksize)).view(-1, blocksize)  # zeros never change an absmax
        amax = blocks.abs().amax(dim=1)
        scaled = (blocks * (1.0 / amax.clamp(min=1e-38)).unsqueeze(1)).clamp(-1, 1)
        idx[start:start + part.numel()] = torch.bucketize(scaled.reshape(-1)[:part.numel()], bounds, out_int32=True)
        absmax.append(amax)
    return idx, torch.cat(absmax)


def dequantize_blockwise(idx: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int) -> torch.Tensor:
    """code[idx] * absmax of each index's block, fp32, flat."""
    n = idx.numel()
    values = F.pad(code.to(absmax.device)[idx.long()], (0, -n % blocksize))
    return (values.view(-1, blocksize) * absmax.unsqueeze(1)).reshape(-1)[:n]


@dataclass
class NF4Tensor:
    """A weight stored as NF4: packed codes + absmax constants (8-bit + fp32 second level when double-quantized)."""

    qweight: torch.Tensor                 # uint8 [ceil(n/2)], two codes per byte, first in the high nibble
    absmax: torch.Tensor                  # fp32 [blocks], or uint8 [blocks] when double-quantized
    shape: tuple[int, ...]
    blocksize: int = BLOCKSIZE
    absmax_scale: torch.Tensor | None = None   # fp32 [ceil(blocks/256)] second-level constants
    absmax_offset: torch.Tensor | None = None  # fp32 scalar: mean of the constants, removed before 8-bit

    @property
    def double_quant(self) -> bool:
        return self.absmax_scale is not None

    def numel(self) -> int:
        return int(torch.Size(self.shape).numel())

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.buffers().values())

    def buffers(self) -> dict[str, torch.Tensor]:
        names = ("qweight", "absmax", "absmax_scale", "absmax_offset")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def meta(self) -> dict:
        return {"format": "nf4", "shape": list(self.shape), "blocksize": self.blocksize}

    def block_absmax(self) -> torch.Tensor:
        """The fp32 constant c_b of every block (undoing the double quantization)."""
        if not self.double_quant:
            return self.absmax
        if _bnb_ops() is not None:
            scale = _bnb_ops().dequantize_blockwise(self.absmax, self.absmax_scale, dynamic_map().to(self.absmax.device),
                                                   ABSMAX_BLOCKSIZE, torch.float32)
        else:
            scale = dequantize_blockwise(self.absmax, self.absmax_scale, dynamic_map(), ABSMAX_BLOCKSIZE)
        return scale + self.absmax_offset

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """W ~= q[Q] * c_b, computed in fp32 and cast to `dtype`.

        Uses bitsandbytes' dequantization kernel when it is installed (same layout, same result in fp32,
        about 5x faster on CPU than the torch expression below), else plain torch.
        """
        if _bnb_ops() is not None:
            return _bnb_ops().dequantize_4bit(self.qweight, self.block_absmax(), self.blocksize, "nf4", list(self.shape), dtype)
        table = _pair_table(str(self.qweight.device))
        pairs = table[self.qweight.long()].reshape(-1)  # one lookup yields both nibbles of a byte
        n = self.numel()
        pairs = F.pad(pairs[:n], (0, -n % self.blocksize))
        out = (pairs.view(-1, self.blocksize) * self.block_absmax().unsqueeze(1)).reshape(-1)[:n]
        return out.view(self.shape).to(dtype)

    def dequantize_rows(self, rows: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Dequantize only the given rows of a 2-D weight (an embedding lookup); rows must fill whole blocks."""
        n_rows, width = self.shape
        if width % self.blocksize:
            return self.dequantize(dtype)[rows]
        per_row = width // self.blocksize
        codes = self.qweight.view(n_rows, width // 2)[rows]
        absmax = self.block_absmax().view(n_rows, per_row)[rows]
        values = _pair_table(str(codes.device))[codes.long()].reshape(*rows.shape, per_row, self.blocksize)
        return (values * absmax.unsqueeze(-1)).reshape(*rows.shape, width).to(dtype)


@functools.cache
def _bnb_ops():
    """bitsandbytes' registered torch ops, or None where bitsandbytes is not installed."""
    try:
        import bitsandbytes  # noqa: F401  (importing registers torch.ops.bitsandbytes)
    except ImportError:
        return None
    return torch.ops.bitsandbytes


@functools.cache
def _pair_table(device: str) -> torch.Tensor:
    """[256, 2]: the two NF4 values packed in each possible byte (cached per device)."""
    byte = torch.arange(256)
    return torch.stack([NF4_CODE[byte >> 4], NF4_CODE[byte & 0xF]], dim=1).to(device)


def quantize_nf4(w: torch.Tensor, blocksize: int = BLOCKSIZE, double_quant: bool = True) -> NF4Tensor:
    """Quantize a float tensor to NF4 with blockwise absmax (and 8-bit double quantization of the constants).

    The 4-bit codes come from bitsandbytes' `quantize_4bit` kernel when it is installed (the same codes and
    constants as the torch expression, about 4x faster on CPU: it decides how long a QLoRA or LoftQ model
    takes to set up), else from `quantize_blockwise`. The 8-bit code of the constants is always ours (see
    the module docstring: bitsandbytes' kernel does not always pick the nearest one).
    """
    if _bnb_ops() is not None and w.dtype in (torch.float32, torch.bfloat16, torch.float16):
        packed, absmax = _bnb_ops().quantize_4bit(w.contiguous(), blocksize, "nf4", torch.uint8)
        packed, absmax = packed.view(-1), absmax.float()
    else:
        idx, absmax = quantize_blockwise(w, NF4_CODE, blocksize)
        idx = F.pad(idx, (0, idx.numel() % 2), value=7)  # pad with the code of 0.0, as bitsandbytes does
        packed = (idx[0::2] << 4) | idx[1::2]
    if not double_quant:
        return NF4Tensor(packed, absmax, tuple(w.shape), blocksize)
    offset = absmax.mean()
    q_absmax, absmax_scale = quantize_blockwise(absmax - offset, dynamic_map(), ABSMAX_BLOCKSIZE)
    return NF4Tensor(packed, q_absmax, tuple(w.shape), blocksize, absmax_scale, offset)


def nf4_from_buffers(buffers: dict[str, torch.Tensor], meta: dict) -> NF4Tensor:
    """Rebuild an `NF4Tensor` from its `buffers()` and `meta()` (e.g. read back from safetensors)."""
    return NF4Tensor(buffers["qweight"], buffers["absmax"], tuple(meta["shape"]), meta["blocksize"],
                     buffers.get("absmax_scale"), buffers.get("absmax_offset"))
