"""Weight quantization: NF4 with double quantization (QLoRA), group-wise intN (QA-LoRA), LoftQ init,
the frozen quantized layers that hold them, and the low-bit export format."""

from adaptlab.quant.groupwise import GroupTensor, quantize_groupwise
from adaptlab.quant.layers import QuantEmbedding, QuantLinear, dequantize_model, quantize_model
from adaptlab.quant.nf4 import NF4Tensor, quantize_nf4

__all__ = ["GroupTensor", "NF4Tensor", "QuantEmbedding", "QuantLinear", "dequantize_model", "quantize_groupwise",
           "quantize_model", "quantize_nf4"]
