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

NF4 (bitsandbytes 4-bit NormalFloat; Dettmers et al. 2023, QLoRA, section 3): blocks of 64 values of
the flattened weight, each with an absmax; with double quantization the absmaxes are stored as 8
bits in blocks of 256 with one fp32 constant per 256 blocks (plus one fp32 offset per tensor, not
counted): 4 + 8/64 + 32/(64 x 256) = 4.127 bits per weight (the paper: "8/64 + 32/(64 * 256) = 0.127
bits" per parameter for the constants). bitsandbytes' ``quantize_4bit(compress_statistics=True)``
(bitsandbytes/functional.py: blocksize 64, ``quantize_blockwise(absmax, blocksize=256)``) is what
vLLM calls when it quantizes a 16-bit checkpoint while loading (``--quantization bitsandbytes``:
vllm/model_executor/model_loader/loader.py in 0.8.5, bitsandbytes_loader.py in 0.12.0, both
``quant_type="nf4", compress_statistics=True``). Only ``LinearBase`` layers are quantized
(``BitsAndBytesConfig.get_quant_method``, vllm/model_executor/layers/quantization/bitsandbytes.py):
the embedding and lm_head (vocab-parallel embeddings), norms and router stay 16-bit. The GEMMs run
in 16 bits: bitsandbytes' ``matmul_4bit`` (bitsandbytes/autograd/_functions.py) multiplies a single
row with a fused 4-bit GEMV (``gemv_4bit``) and, for more rows, dequantizes the whole weight to a
16-bit copy and calls ``torch.nn.functional.linear`` on it, on every call
(:attr:`NumericFormat.dequantizes_per_matmul`).
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
    group_size: int = 0  # weights per quantization group (0: no groups)
    group_overhead_bits: int = 0  # per group: scale + zero point (AWQ/GPTQ), 8-bit absmax (NF4)
    quantized: bool = False  # True: only the block linear layers use weight_bits; the rest stays 16-bit
    description: str = ""
    #: Groups of ``group_size`` input features per output column (AWQ/GPTQ: TP must split the input
    #: at group boundaries), or blocks of the flattened matrix (bitsandbytes: any split works).
    groups_along_input: bool = True
    #: Second-level constants (double quantization): one of ``group2_overhead_bits`` per
    #: ``group2_size`` groups.
    group2_size: int = 0
    group2_overhead_bits: int = 0
    #: The GEMM of more than one row runs on a 16-bit copy of the weight dequantized on every call
    #: (bitsandbytes' ``matmul_4bit``); one row takes a fused 4-bit GEMV.
    dequantizes_per_matmul: bool = False

    @property
    def bits_per_weight(self) -> float:
        """Average bits per quantized weight, group overhead (both levels) included."""
        bits = float(self.weight_bits)
        if self.group_size:
            bits += self.group_overhead_bits / self.group_size
            if self.group2_size:
                bits += self.group2_overhead_bits / (self.group_size * self.group2_size)
        return bits

    def linear_bytes(self, in_features: int, out_features: int) -> float:
        """Bytes of one ``in x out`` weight matrix in this format (groups along the input of each
        output column, or blocks of the flattened matrix)."""
        weights = in_features * out_features * self.weight_bits / 8
        if self.group_size:
            if self.groups_along_input:
                groups = math.ceil(in_features / self.group_size) * out_features
            else:
                groups = math.ceil(in_features * out_features / self.group_size)
            weights += groups * self.group_overhead_bits / 8
            if self.group2_size:
                weights += math.ceil(groups / self.group2_size) * self.group2_overhead_bits / 8
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
        NumericFormat(
            "nf4", 4, "bf16", 64, 8, True,
            "bitsandbytes NF4, blocks of 64, double quantization (8-bit absmax, fp32 per 256 blocks); "
            "dequantized to 16 bits for the GEMMs",
            groups_along_input=False, group2_size=256, group2_overhead_bits=32, dequantizes_per_matmul=True,
        ),
    )
}

#: NF4 with double quantization, bits per weight (4.127): the serving format and QLoRA's frozen
#: weights (:mod:`aiinfra.plan.training`) are the same storage.
NF4_DOUBLE_QUANT_BITS = FORMATS["nf4"].bits_per_weight

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
    "bitsandbytes": "nf4",
    "bnb-nf4": "nf4",
    "bnb-4bit": "nf4",
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
