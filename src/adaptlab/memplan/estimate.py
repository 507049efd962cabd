"""Peak memory and time per training step of a method on a model, from the model's config alone.

The peak is the largest of two phases of a run of `train.loop.Trainer`, each a sum of parts (bytes;
N = parameters, T = trainable parameters, c = bytes of the compute dtype, 2 for bf16 / fp16, 4 for fp32):

load     CPU: framework + the checkpoint file as read (safetensors are memory-mapped, so its pages count in
         the resident set while the model is built) + the dense model when its dtype differs from the file's
         + the low-bit codes of a quantizing method (built while the dense weights are still mapped). The
         mapped pages are clean and the OS can drop them, so whether a run fits is judged without them.
         CUDA: framework + the dense model in its load dtype (`models.load_model` moves it to the GPU whole
         before a quantizing method swaps its layers for codes) + the codes.
step     framework
         + weights      full fine-tuning: fp32 master weights, 4 N. Adapters: the frozen base in the compute
                        dtype (c N), or low-bit: NF4 with blocks of 64 and double-quantized 8-bit constants in
                        blocks of 256 is 4 + 8/64 + 32/(64*256) = 4.127 bits per weight (qlora, loftq); group-wise
                        INT-b with fp16 scale and zero per group of g is b + 32/g bits (qalora); norms stay c.
                        Adapter weights are fp32 (peft upcasts them): 4 T.
         + gradients    fp32, for trainable parameters only: 4 T.
         + optimizer    AdamW's two fp32 moments, 8 T; bitsandbytes' 8-bit / paged 8-bit AdamW 2 T
                        (qlora / loftq use it on CUDA; `--optimizer` asks "what if").
         + casts        full fine-tuning under bf16 autocast keeps a bf16 copy of every weight it multiplies
                        by for backward: 2 x (matmul weights).
         + activations  what autograd saves, per layer per token (h hidden, i intermediate, q = heads x head_dim,
                        kv = kv_heads x head_dim), measured with saved-tensor hooks on tiny Llamas:
                            frozen base, bf16:   12 h +  8 i + 4 q + 4 kv  (+ the method's own, `memplan.methods`)
                            frozen base, fp32:   16 h + 16 i + 8 q + 8 kv
                            full, bf16:          26 h +  8 i + 4 q + 4 kv  (fp32 residual stream, bf16 matmuls)
                            full, fp32:          24 h + 16 i + 8 q + 8 kv
                        plus 4 bytes per head (SDPA keeps the softmax's log-sum-exp, not the scores).
                        With activation checkpointing a layer keeps only its input (h values in the residual
                        dtype) and one layer at a time recomputes its full set in backward.
         + loss         `train.losses.linear_cross_entropy` never holds [tokens x vocabulary] logits: it works in
                        chunks of C = min(2048, tokens) rows; at most the fp32 logits, the fp32 softmax and its
                        cast back are alive at once (4 + 4 + c bytes per logit; 8 in fp32). Every token is
                        counted as a target (the worst case: SFT masks prompt tokens out), and it keeps
                        d loss / d h (tokens x h x c) for backward, plus d loss / d W (V x h, fp32) when the head
                        trains.
The step's parts add up, except gradients and activations: backward frees a layer's activations as it
fills that layer's gradients, so the step holds the larger of (activations + loss) and gradients.
framework: the Python process with torch, transformers, peft, the tokenizer and the data (CPU: resident
set, calibrated on measured runs of the builtin model, `FRAMEWORK_CPU_MB`); on CUDA the context and the
allocator's slack (`FRAMEWORK_CUDA_MB`). The estimate is checked against the trainer's recorded peak
(the resident-set high-water mark on CPU) for full, lora and qlora by tests/test_plan_slow.py.

Time per step = flops / (matmul peak x efficiency). Flops per token (Kaplan et al. 2020; PaLM, Chowdhery et
al. 2022, app. B): forward 2 M + 4 L q s (M = weights multiplied through, s = sequence length); backward
twice that for full fine-tuning, and only the activation gradients (2 M + 8 L q s) for a frozen base;
checkpointing adds one forward. `EFFICIENCY` is calibrated (measured step time of the builtin model against
this count and the in-process matmul peak) and stated in the output; quantized methods pay
`DEQUANT_SLOWDOWN` for rebuilding their weights. Time is the rougher of the two estimates (within ~2x).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adaptlab.memplan.methods import ADAMW_BYTES, MethodCost, method_cost
from adaptlab.memplan.shapes import ModelShape
from adaptlab.methods.base import MethodConfig
from adaptlab.registry import lookup

MB = 2**20
FRAMEWORK_CPU_MB = 650.0      # resident set before the model: fit to five measured runs of the builtin model
FRAMEWORK_CUDA_MB = 600.0     # CUDA context + allocator slack (not in torch's allocated count)
LOSS_CHUNK = 2048             # train.losses.linear_cross_entropy's default chunk
# achieved / peak matmul throughput of a training step. CPU: measured on the builtin model on a loaded 2-core
# AMD EPYC (full, 4 x 512 tokens: 0.15; 2 x 256 tokens: 0.05 to 0.06, small matmuls run further from peak).
# CUDA: not measured here (no GPU); 0.4 is the usual model-flops utilisation of dense training.
EFFICIENCY = {"cpu": 0.1, "cuda": 0.4}
# a quantized base is dequantized again in every forward and backward: measured qlora / lora step time 2.4 (CPU)
DEQUANT_SLOWDOWN = {"cpu": 2.4, "cuda": 1.0}
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
# activation bytes per layer per token: (h, i, q, kv) coefficients by (trains every weight, compute bytes)
ACTIVATION = {(False, 2): (12, 8, 4, 4), (False, 4): (16, 16, 8, 8), (True, 2): (26, 8, 4, 4), (True, 4): (24, 16, 8, 8)}


@dataclass(frozen=True)
class Settings:
    """The recipe switches that change memory and time."""

    seq_len: int = 2048
    batch_size: int = 4
    dtype: str = "bf16"                       # the resolved compute dtype: bf16 | fp16 | fp32
    activation_checkpointing: bool = False
    optimizer: str = "auto"                   # auto (what the method uses) | adamw | adamw8bit | paged_adamw8bit
    method: MethodConfig = field(default_factory=MethodConfig)

    @property
    def tokens(self) -> int:
        return self.seq_len * self.batch_size


@dataclass
class Estimate:
    method: str
    trainable_params: int
    total_params: int
    optimizer: str
    parts_mb: dict[str, float]                # the step phase, part by part
    load_mb: float                            # the load phase as the resident set records it
    load_own_mb: float                        # the same without pages the OS may drop (a mapped checkpoint)
    flops: float                              # per optimizer step (one micro-batch)

    @property
    def step_mb(self) -> float:
        """The step's parts, with gradients and activations overlapping: backward frees each layer's
        activations as it fills that layer's gradients, so the step holds the larger of the two, not both."""
        p = self.parts_mb
        return sum(p.values()) - min(p["gradients"], p["activations"] + p["loss"])

    @property
    def peak_mb(self) -> float:
        return max(self.step_mb, self.load_mb)

    @property
    def needed_mb(self) -> float:
        """What the device must hold for the run to succeed: `peak_mb` less the droppable mapped pages."""
        return max(self.step_mb, self.load_own_mb)


def activation_bytes(shape: ModelShape, full: bool, compute: int) -> float:
    """Saved activations of one decoder layer per token, without checkpointing (table in the docstring)."""
    ch, ci, cq, ckv = ACTIVATION[(full, compute)]
    return ch * shape.hidden + ci * shape.intermediate + cq * shape.q_dim + ckv * shape.kv_dim + 4 * shape.heads


def loss_bytes(shape: ModelShape, tokens: int, compute: int, head_trains: bool) -> float:
    """Peak of `linear_cross_entropy`: one chunk of logits in flight, d/dh kept, d/dW when the head trains."""
    chunk = min(LOSS_CHUNK, tokens) * shape.vocab * (compute + 8 if compute < 4 else 8)
    return chunk + tokens * shape.hidden * compute * 2 + (4 * shape.vocab * shape.hidden if head_trains else 0)


def step_flops(shape: ModelShape, settings: Settings, full: bool) -> float:
    """Matmul flops of one micro-batch: forward 2M + 4Lqs per token, backward 2x that (full) or the
    activation half only (frozen base), one more forward under activation checkpointing."""
    fwd_w, attn = 2 * shape.matmul_params, 4 * shape.layers * shape.q_dim * settings.seq_len
    per_token = fwd_w + attn + (2 * fwd_w if full else fwd_w) + 2 * attn
    if settings.activation_checkpointing:
        per_token += fwd_w + attn
    return per_token * settings.tokens


def estimate(shape: ModelShape, method: str, settings: Settings, device_type: str = "cpu") -> Estimate:
    """Peak memory (MiB) of training `method` on `shape` with `settings`, part by part, and the step's flops."""
    cost: MethodCost = method_cost(method)
    cfg = settings.method.model_copy(update={"name": method})
    compute = lookup(DTYPE_BYTES, settings.dtype, "dtype")
    optimizer = cost.optimizer(device_type) if settings.optimizer == "auto" else settings.optimizer
    trainable = cost.trainable(shape, cfg)
    base = cost.base_bytes(shape, cfg, compute)
    per_layer = activation_bytes(shape, cost.full, compute) + cost.extra_per_token(shape, cfg, compute)
    tokens = settings.tokens
    if settings.activation_checkpointing:
        activations = shape.layers * tokens * shape.hidden * (4 if cost.full else compute) + tokens * per_layer
    else:
        activations = shape.layers * tokens * per_layer
    framework = FRAMEWORK_CUDA_MB if device_type == "cuda" else FRAMEWORK_CPU_MB
    parts = {
        "framework": framework * MB,
        "weights": base + (0 if cost.full else 4 * trainable),
        "gradients": 4.0 * trainable,
        "optimizer": lookup(ADAMW_BYTES, optimizer, "optimizer") * trainable,
        "casts": 2.0 * shape.matmul_params if cost.full and compute < 4 else 0.0,
        "activations": activations,
        "loss": loss_bytes(shape, tokens, compute, head_trains=cost.full),
    }
    stored, load_bytes = DTYPE_BYTES[shape.stored_dtype], 4 if cost.full else compute
    codes = base if cost.quantized else 0
    if device_type == "cuda":
        load = own = framework * MB + shape.total_params * load_bytes + codes
    else:
        own = framework * MB + (shape.total_params * load_bytes if load_bytes != stored else 0) + codes
        load = own + shape.total_params * stored
    return Estimate(method, trainable, shape.total_params, optimizer, {k: v / MB for k, v in parts.items()},
                    load / MB, own / MB, step_flops(shape, settings, cost.full))
