"""Asymmetric group-wise integer quantization (INT2/3/4/8) along the input dimension, and bit packing.

Used by QA-LoRA (Xu et al. 2023, arXiv:2309.14717, eq. 1-2): every row of W [out, in] is cut into
groups of L contiguous input channels; each group g has its own scale and zero point:

    lo_g = min(min_g, 0), hi_g = max(max_g, 0)   (the range always holds 0, as in GPTQ, so 0 <= z_g <= 2^N - 1)
    s_g = (hi_g - lo_g) / (2^N - 1)             z_g = -lo_g / s_g            (z_g kept in floating point)
    q   = clamp(round(W / s_g + z_g), 0, 2^N - 1)   (unsigned N-bit integers)
    W~  = s_g * (q - z_g)

The zero point is a float (as in QA-LoRA's merge, where the learned update lands in z_g), so the
grid of a group is {s_g * (k - z_g) : k = 0 .. 2^N - 1} and lo_g maps exactly to code 0.

Packing (`pack_bits`): codes are laid out row-major; every 8 consecutive codes form one little-endian
bit string of N bytes (code i occupies bits [N*i, N*(i+1)) ), so INT4 puts the first code of a byte
in the low nibble, INT2 four codes per byte, INT3 eight codes in three bytes. The code count is padded
with zeros to a multiple of 8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

SUPPORTED_BITS = (2, 3, 4, 8)


def check_groupwise(shape: tuple[int, ...], bits: int, group_size: int, name: str = "weight") -> None:
    """Raise a clear error for bit widths or group sizes this quantizer cannot represent."""
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits={bits} is not supported for group-wise quantization; choose one of {SUPPORTED_BITS}")
    if len(shape) != 2:
        raise ValueError(f"{name}: group-wise quantization needs a 2-D weight, got shape {tuple(shape)}")
    if shape[1] % group_size:
        divisors = [d for d in range(1, shape[1] + 1) if shape[1] % d == 0 and d <= 256]
        raise ValueError(f"group_size={group_size} does not divide the input dimension {shape[1]} of {name}; "
                         f"allowed group sizes: {divisors}")


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned `bits`-bit integers (any shape) into a flat uint8 tensor, 8 codes per `bits` bytes."""
    flat = F.pad(codes.reshape(-1).to(torch.int64), (0, -codes.numel() % 8)).view(-1, 8)
    shifts = torch.arange(8, device=codes.device) * bits
    words = (flat << shifts).sum(dim=1)                      # one bits*8-bit little-endian integer per 8 codes
    byte_shifts = torch.arange(bits, device=codes.device) * 8
    return ((words.unsqueeze(1) >> byte_shifts) & 0xFF).to(torch.uint8).reshape(-1)


def unpack_bits(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of `pack_bits`: the first `numel` codes as uint8."""
    if bits == 8:
        return packed[:numel]
    if bits == 4:  # the common case, without the int64 detour
        return torch.stack([packed & 0xF, packed >> 4], dim=1).reshape(-1)[:numel]
    groups = packed.view(-1, bits).to(torch.int64)
    words = (groups << (torch.arange(bits, device=packed.device) * 8)).sum(dim=1)
    shifts = torch.arange(8, device=packed.device) * bits
    return ((words.unsqueeze(1) >> shifts) & ((1 << bits) - 1)).to(torch.uint8).reshape(-1)[:numel]


@dataclass
class GroupTensor:
    """A 2-D weight [out, in] stored as packed N-bit codes with a scale and a zero point per group of L inputs."""

    qweight: torch.Tensor   # uint8, packed codes (see `pack_bits`)
    scales: torch.Tensor    # [out, in / L]
    zeros: torch.Tensor     # [out, in / L], float zero points
    shape: tuple[int, int]
    bits: int
    group_size: int

    def numel(self) -> int:
        return self.shape[0] * self.shape[1]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.buffers().values())

    def buffers(self) -> dict[str, torch.Tensor]:
        return {"qweight": self.qweight, "scales": self.scales, "zeros": self.zeros}

    def meta(self) -> dict:
        return {"format": "groupwise", "shape": list(self.shape), "bits": self.bits, "group_size": self.group_size}

    def codes(self) -> torch.Tensor:
        """The unsigned integer codes as uint8 [out, in]."""
        return unpack_bits(self.qweight, self.bits, self.numel()).view(self.shape)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """W~ = s_g * (q - z_g), computed in fp32 and cast to `dtype`."""
        return _dequant(self.codes(), self.scales, self.zeros, self.group_size).to(dtype)

    def dequantize_rows(self, rows: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Only the given rows (an embedding lookup); rows are whole packed words when in % 8 == 0."""
        out_f, in_f = self.shape
        if in_f % 8:
            return self.dequantize(dtype)[rows]
        row_bytes = in_f * self.bits // 8
        packed = self.qweight.view(out_f, row_bytes)[rows].reshape(-1)
        codes = unpack_bits(packed, self.bits, rows.numel() * in_f).view(*rows.shape, in_f)
        return _dequant(codes, self.scales[rows], self.zeros[rows], self.group_size).to(dtype)


def _dequant(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    grouped = codes.view(*codes.shape[:-1], -1, group_size).float()
    return ((grouped - zeros.float().unsqueeze(-1)) * scales.float().unsqueeze(-1)).reshape(codes.shape)


def quantize_groupwise(w: torch.Tensor, bits: int = 4, group_size: int = 32,
                       scale_dtype: torch.dtype = torch.float16, chunk_rows: int = 4096) -> GroupTensor:
    """Min/max asymmetric quantization of W [out, in] per group of `group_size` input channels.

    Scales and zeros are stored in `scale_dtype` (fp16: 2 x 16 bits per group); the codes are rounded
    against the stored (rounded) scale and zero so dequantization reproduces exactly what was chosen.
    Rows are processed `chunk_rows` at a time (a multiple of 8, so packed chunks concatenate) to keep
    the temporaries small next to the weight.
    """
    check_groupwise(tuple(w.shape), bits, group_size)
    out_f, in_f = w.shape
    qmax = (1 << bits) - 1
    packed, scales, zeros = [], [], []
    for start in range(0, out_f, chunk_rows):
        groups = w[start:start + chunk_rows].float().view(-1, in_f // group_size, group_size)
        lo, hi = groups.amin(dim=-1).clamp(max=0), groups.amax(dim=-1).clamp(min=0)
        scale = ((hi - lo) / qmax).clamp(min=torch.finfo(scale_dtype).tiny).to(scale_dtype)
        zero = (-lo / scale.float()).to(scale_dtype)
        codes = torch.round(groups / scale.float().unsqueeze(-1) + zero.float().unsqueeze(-1)).clamp(0, qmax)
        packed.append(pack_bits(codes.to(torch.uint8), bits))
        scales.append(scale)
        zeros.append(zero)
    return GroupTensor(torch.cat(packed), torch.cat(scales), torch.cat(zeros), (out_f, in_f), bits, group_size)


def group_from_buffers(buffers: dict[str, torch.Tensor], meta: dict) -> GroupTensor:
    """Rebuild a `GroupTensor` from its `buffers()` and `meta()`."""
    return GroupTensor(buffers["qweight"], buffers["scales"], buffers["zeros"], tuple(meta["shape"]),
                       meta["bits"], meta["group_size"])
