"""Numeric formats of weights and of the KV cache.

What stays in 16 bits: in the AWQ/GPTQ/FP8/INT8 checkpoints that vLLM and TensorRT-LLM load, only
the linear layers inside the transformer blocks (q, k, v, o and the MLP / expert matrices) are
quantized. The token embedding, the output projection (lm_head), the normalisation weights, the
MoE router and any biases stay in the 16-bit model dtype.

Group quantization (AWQ: Lin et al. 2024; GPTQ: Frantar et al. 2023, as packed by AutoAWQ and
AutoGPTQ): 4-bit weights in groups of 128 input features; each group of each output column has
an fp16 scale (16 bits) and a zero point packed as 4 bits (``qzeros``), so the overhead is
20 bits per 128 weights: 4 + 20/128 = 4.156 bits per weight. GPTQ's optional ``g_idx`` (one int32
per input row, with act-order) is not counted: it is < 0.01 % of the weights.
FP8 (E4M3) and INT8 (W8A8) use per-tensor or per-channel scales: negligible, not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiinfra.catalog.names import lookup


@dataclass(frozen=True)
class NumericFormat:
    name: str
    weight_bits: int  # bits per quantized weight
    compute: str  # tensor-core precision of the GEMMs: bf16 (also for fp16 and int4 dequant), fp8, int8
    group_size: int = 0  # input features per quantization group (0: no groups)
    group_overhead_bits: int = 0  # per group and output column: scale + zero point
    quantized: bool = False  # True: only the block linear layers use weight_bits; the rest stays 16-bit
    description: str = ""

    @property
    def bits_per_weight(self) -> float:
        """Average bits per quantized weight, group overhead included."""
        if self.group_size:
            return self.weight_bits + self.group_overhead_bits / self.group_size
        return float(self.weight_bits)

    def linear_bytes(self, in_features: int, out_features: int) -> float:
        """Bytes of one ``in x out`` weight matrix in this format (groups along the input)."""
        weights = in_features * out_features * self.weight_bits / 8
        if self.group_size:
            groups = math.ceil(in_features / self.group_size) * out_features
            weights += groups * self.group_overhead_bits / 8
        return weights


FORMATS: dict[str, NumericFormat] = {
    f.name: f
    for f in (
        NumericFormat("bf16", 16, "bf16", description="bfloat16 (model dtype)"),
        NumericFormat("fp16", 16, "bf16", description="float16 (model dtype)"),
        NumericFormat("fp8", 8, "fp8", quantized=True, description="FP8 E4M3 weights and activations (W8A8)"),
        NumericFormat("int8", 8, "int8", quantized=True, description="INT8 weights and activations (W8A8)"),
        NumericFormat(
            "awq-int4", 4, "bf16", 128, 20, True,
            "AWQ 4-bit weights, group 128, fp16 scale + 4-bit zero per group; fp16 compute",
        ),
        NumericFormat(
            "gptq-int4", 4, "bf16", 128, 20, True,
            "GPTQ 4-bit weights, group 128, fp16 scale + 4-bit zero per group; fp16 compute",
        ),
    )
}

FORMAT_ALIASES: dict[str, str] = {
    "none": "bf16",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "fp8-e4m3": "fp8",
    "w8a8": "int8",
    "awq": "awq-int4",
    "gptq": "gptq-int4",
    "int4-awq": "awq-int4",
    "int4-gptq": "gptq-int4",
    "int4": "awq-int4",
}


def numeric_format(name: str) -> NumericFormat:
    """Look a weight format up by name or alias; KeyError with a suggestion otherwise."""
    return lookup(FORMATS, FORMAT_ALIASES, name, "numeric format")


KV_DTYPES: dict[str, int | None] = {"auto": None, "fp8": 1, "fp8-e4m3": 1, "fp8-e5m2": 1, "bf16": 2, "fp16": 2}


def kv_bytes_per_value(kv_dtype: str, model_dtype: str = "bf16") -> int:
    """Bytes of one cached K or V value: ``auto`` follows the model dtype (2 bytes for bf16/fp16),
    whatever the weights' quantization; ``fp8`` is 1 byte."""
    key = kv_dtype.strip().lower()
    if key not in KV_DTYPES:
        lookup(KV_DTYPES, {}, kv_dtype, "KV-cache dtype")  # raises with a suggestion
    size = KV_DTYPES[key]
    if size is None:
        return 2 if model_dtype in ("bf16", "fp16") else 4
    return size
