"""Serving capacity (vLLM-style): weights, KV cache, blocks, TP/PP, decode roofline, speculation.

- KV cache per token: 2 x layers x kv_heads x head_dim x bytes (K and V of every layer).
- vLLM budget: gpu_memory_utilization x GPU memory, minus weights, the profiled activation
  peak and non-torch memory, is the KV cache; it is cut into blocks of 16 tokens. Or the KV cache
  is given: vLLM's ``--kv-cache-memory-bytes`` (per GPU, from 0.10.2; the utilization is then not
  used) or ``--num-gpu-blocks-override`` (blocks); the layout must then hold it within the GPU.
- Weights are reported as checkpoints store them (quantized linear layers with their group scales,
  embeddings, head and norms in 16 bits) and as the nominal bits x parameters figure.
- Decode roofline: a step reads the weights once and the KV cache of every sequence;
  time = max(bytes / HBM bandwidth, FLOPs / tensor peak) + TP all-reduce latency.
- bitsandbytes NF4 (formats whose ``dequantizes_per_matmul``): a GEMM of more than one row runs on
  a 16-bit copy of the weight that ``matmul_4bit`` dequantizes on every call, so a decode step of
  batch > 1 (and every prefill) also writes and reads the 16-bit linear weights (2 x 2 bytes per
  weight beyond the 4-bit read); batch 1 reads the 4-bit weights with the fused GEMV, assumed at the
  same HBM efficiency as the other kernels. MoE layers (vLLM's ``BitsAndBytesMoEMethod``) dequantize
  every expert on every call and read the touched ones in 16 bits. The profiled activation peak
  holds the 16-bit copy of the largest linear shard.
- Prefill of a P-token prompt on one replica (latency: the pipeline stages run one after the other,
  so only TP divides the work): max(FLOPs / (TP x peak x efficiency), weights / HBM bandwidth) +
  TP all-reduces, FLOPs = 2 x matmul weights x P + 2 x layers x width x P^2 (causal attention).
  Time to first token = the prefill of one request; per-user speed = 1 / decode step; a request's
  latency = TTFT + (output - 1) decode steps.
- Speculative decoding (Leviathan et al., ICML 2023): with acceptance rate a, draft length g and
  draft/target cost ratio c, tokens per target step (1 - a^(g+1)) / (1 - a) and wall-clock
  speedup (1 - a^(g+1)) / ((1 - a)(g c + 1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aiinfra.catalog.formats import NumericFormat, kv_bytes_per_value, numeric_format
from aiinfra.catalog.gpus import GpuModel, resolve_gpu
from aiinfra.catalog.models import LlmArchitecture, resolve_model
from aiinfra.catalog.time_model import TIME_INPUTS
from aiinfra.plan.common import GB, GIB, PlanError, gb, gib, require_positive

# ---------------------------------------------------------------- assumptions (documented)

BLOCK_SIZE = 16  # vLLM's default KV block, tokens
MAX_NUM_BATCHED_TOKENS = 8192  # tokens of the profiling forward pass (vLLM chunked-prefill default)
MAX_NUM_SEQS = 256  # vLLM default: sequences in one batch
#: CUDA context, NCCL, cuBLAS workspaces and CUDA graphs: memory outside the weights, the
#: profiled activations and the KV cache, per GPU.
NON_TORCH_BYTES = 1.5 * GIB
HBM_EFFICIENCY = 0.8  # achievable fraction of the HBM bandwidth in decode kernels
COMPUTE_EFFICIENCY = 0.6  # achievable fraction of the tensor peak in decode GEMMs
ALLREDUCE_LATENCY_S = 8e-6  # one small NVLink all-reduce (two per layer with TP)
#: Achievable fraction of NVLink's one-direction peak for the prefill all-reduces: the training
#: step-time model's ``link_efficiency`` (:mod:`aiinfra.catalog.time_model`), one figure for both.
NVLINK_EFFICIENCY = TIME_INPUTS["link_efficiency"].default
ROOFLINE_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class ServingRequest:
    """One deployment. ``tp``/``pp`` None: auto (smallest TP in a node, then PP across nodes)."""

    model: LlmArchitecture
    gpu: GpuModel
    gpus_per_node: int = 8
    weight_format: str = "bf16"  # bf16 fp16 fp8 int8 awq-int4 gptq-int4 nf4
    dtype: str = "bf16"  # model (activation) dtype
    kv_dtype: str = "auto"
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.9
    tp: int | None = None
    pp: int | None = 1
    replicas: int | None = None
    target_tokens_per_s: float | None = None
    draft: LlmArchitecture | None = None
    num_speculative_tokens: int = 5
    acceptance_rate: float = 0.7
    max_num_seqs: int = MAX_NUM_SEQS
    max_num_batched_tokens: int = MAX_NUM_BATCHED_TOKENS
    avg_context_len: int | None = None  # roofline context; default max_model_len / 2
    prompt_len: int | None = None  # prefill / TTFT prompt; default: the roofline context
    output_len: int | None = None  # tokens generated per request (request latency)
    kv_cache_memory_bytes: float | None = None  # KV cache per GPU, given (vLLM --kv-cache-memory-bytes)
    num_gpu_blocks_override: int | None = None  # KV blocks per GPU, given (vLLM --num-gpu-blocks-override)
    name: str = ""

    @property
    def format(self) -> NumericFormat:
        return numeric_format(self.weight_format)


# ---------------------------------------------------------------- weights


@dataclass(frozen=True)
class WeightBytes:
    """Bytes of the weights in a format, split the way TP/PP split them."""

    layer_linear: float  # quantized linear layers of one transformer layer
    layer_other: float  # norms, router, biases of one layer (16-bit, replicated by TP)
    embedding: float  # input embedding (+ positions), vocab-parallel
    lm_head: float  # output projection (0 when tied), vocab-parallel
    final_norm: float
    layers: int

    @property
    def total(self) -> float:
        return self.layers * (self.layer_linear + self.layer_other) + self.embedding + self.lm_head + self.final_norm

    def per_gpu(self, tp: int, pp: int, tied: bool) -> float:
        """The heaviest GPU: ceil(layers / pp) layers split by TP, plus the embedding (first stage)
        or the output projection (last stage; a copy of the embedding when tied and PP > 1)."""
        stage = math.ceil(self.layers / pp)
        body = stage * (self.layer_linear / tp + self.layer_other) + self.final_norm
        head = self.embedding if (tied and pp > 1) else self.lm_head
        if pp == 1:
            return body + (self.embedding + self.lm_head) / tp
        return body + max(self.embedding, head) / tp


def weight_bytes(model: LlmArchitecture, fmt: NumericFormat | str, dtype: str = "bf16") -> WeightBytes:
    """Weights in ``fmt``: only the transformer blocks' linear layers are quantized; embeddings,
    lm_head, norms, router and biases stay in the 16-bit ``dtype``."""
    fmt = numeric_format(fmt) if isinstance(fmt, str) else fmt
    hi = _dtype_bytes(dtype)
    linear_params = sum(i * o * n for _, i, o, n in model.linear_shapes())
    if fmt.quantized:
        linear = sum(fmt.linear_bytes(i, o) * n for _, i, o, n in model.linear_shapes())
    else:
        linear = linear_params * fmt.weight_bits / 8
    other = (model.layer_params - linear_params) * hi
    return WeightBytes(
        layer_linear=linear,
        layer_other=other,
        embedding=model.embedding_params * hi,
        lm_head=model.lm_head_params * hi,
        final_norm=model.norm_params * hi,
        layers=model.layers,
    )


def dequantize_bytes(
    model: LlmArchitecture, fmt: NumericFormat, dtype: str, rows: int, expert_share: float = 0.0,
    touched_share: float = 1.0,
) -> float:
    """Whole-model bytes a forward pass of ``rows`` tokens moves beyond reading the quantized weights
    once, for a format whose GEMMs run on a 16-bit copy made on every call (bitsandbytes'
    ``matmul_4bit``): the copy written and read back (2 x the 16-bit linear weights) when more than
    one row multiplies; MoE experts (``expert_share`` of the linear weights, ``touched_share`` of
    them used) are all dequantized on every call, whatever the batch: the untouched ones' quantized
    bytes read, all written in 16 bits, the touched ones read in 16 bits."""
    if not fmt.dequantizes_per_matmul:
        return 0.0
    linear16 = sum(i * o * n for _, i, o, n in model.linear_shapes()) * _dtype_bytes(dtype)  # one layer, 16-bit
    quantized = weight_bytes(model, fmt, dtype).layer_linear
    dense = 2 * linear16 * (1 - expert_share) if rows > 1 else 0.0
    experts = expert_share * (quantized * (1 - touched_share) + linear16 * (1 + touched_share))
    return model.layers * (dense + experts)


def dequantized_copy_bytes(model: LlmArchitecture, fmt: NumericFormat, tp: int, dtype: str) -> float:
    """The 16-bit copy of the largest linear shard that a dequantizing format holds during a GEMM
    (0 for formats whose kernels read the quantized weights)."""
    if not fmt.dequantizes_per_matmul:
        return 0.0
    return max(i * o for _, i, o, _ in model.linear_shapes()) / tp * _dtype_bytes(dtype)


def _dtype_bytes(dtype: str) -> float:
    """Bytes of one value in the model dtype (the unquantized weights)."""
    return 2.0 if dtype in ("bf16", "fp16") else 4.0


def kv_cache_bytes_per_token(model: LlmArchitecture, kv_dtype: str = "auto", dtype: str = "bf16") -> float:
    """Whole-model KV cache per token: 2 x layers x kv_heads x head_dim x bytes."""
    return model.kv_bytes_per_token(kv_bytes_per_value(kv_dtype, dtype))


def kv_heads_per_gpu(model: LlmArchitecture, tp: int) -> int:
    """KV heads a GPU holds: kv_heads / TP, or one (replicated) when TP exceeds the KV heads."""
    return max(1, model.kv_heads // tp)


def kv_bytes_per_token_per_gpu(model: LlmArchitecture, tp: int, pp: int, kv_dtype: str, dtype: str = "bf16") -> float:
    layers = math.ceil(model.layers / pp)
    return 2 * layers * kv_heads_per_gpu(model, tp) * model.head_dim * kv_bytes_per_value(kv_dtype, dtype)


def activation_peak_bytes(model: LlmArchitecture, tp: int, batched_tokens: int, max_num_seqs: int) -> float:
    """The profiling forward pass: residual and normed hidden states (2 x 2h bytes/token) plus the
    MLP intermediates (gate/up output and activation, 3 x f / TP x 2 bytes/token, times experts
    per token), and fp32 logits of ``max_num_seqs`` rows for sampling."""
    per_token = 4 * model.hidden + 6 * model.ffn_hidden * model.experts_per_token / tp
    return batched_tokens * per_token + max_num_seqs * model.vocab * 4


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class RooflinePoint:
    batch: int
    step_s: float
    tokens_per_s: float
    bound: str  # memory or compute

    @property
    def per_user_tokens_per_s(self) -> float:
        """Each sequence of the batch gets one token per step."""
        return 1 / self.step_s

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "step_s": self.step_s, "tokens_per_s": self.tokens_per_s, "bound": self.bound,
                "per_user_tokens_per_s": self.per_user_tokens_per_s}


@dataclass(frozen=True)
class Latency:
    """One request alone on a replica: prefill (time to first token), then decode steps."""

    prompt_len: int
    ttft_s: float
    prefill_bound: str
    decode_step_s: float  # batch 1, at the prompt's context
    output_len: int | None

    @property
    def per_user_tokens_per_s(self) -> float:
        return 1 / self.decode_step_s

    @property
    def request_s(self) -> float | None:
        return None if self.output_len is None else self.ttft_s + (self.output_len - 1) * self.decode_step_s

    def to_dict(self) -> dict[str, Any]:
        return {"prompt_len": self.prompt_len, "ttft_s": self.ttft_s, "prefill_bound": self.prefill_bound,
                "prefill_tokens_per_s": self.prompt_len / self.ttft_s, "decode_step_s": self.decode_step_s,
                "per_user_tokens_per_s": self.per_user_tokens_per_s, "output_len": self.output_len,
                "request_latency_s": self.request_s}


@dataclass(frozen=True)
class Speculation:
    draft: str
    num_tokens: int
    acceptance_rate: float
    cost_ratio: float
    expected_tokens_per_step: float
    speedup: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "draft_model": self.draft,
            "num_speculative_tokens": self.num_tokens,
            "acceptance_rate": self.acceptance_rate,
            "draft_cost_ratio": self.cost_ratio,
            "expected_tokens_per_step": self.expected_tokens_per_step,
            "speedup": self.speedup,
        }


@dataclass(frozen=True)
class ServingPlan:
    request: ServingRequest
    tp: int
    pp: int
    weights_bytes: float  # whole model, in the serving format
    weights_per_gpu_bytes: float
    draft_weights_per_gpu_bytes: float
    activation_bytes: float
    non_torch_bytes: float
    kv_cache_per_gpu_bytes: float
    kv_bytes_per_token: float  # whole model (target + draft)
    kv_bytes_per_token_per_gpu: float
    num_blocks: int
    roofline: tuple[RooflinePoint, ...]
    speculation: Speculation | None
    replicas: int
    warnings: tuple[str, ...] = field(default=())
    latency: Latency | None = None

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def nominal_weights_bytes(self) -> float:
        """The figure people quote: every parameter at the format's nominal bits (no scales, no
        16-bit embeddings or head)."""
        return self.request.model.params * self.request.format.weight_bits / 8

    @property
    def kv_cache_tokens(self) -> int:
        return self.num_blocks * BLOCK_SIZE

    @property
    def blocks_per_sequence(self) -> int:
        return math.ceil(self.request.max_model_len / BLOCK_SIZE)

    @property
    def max_concurrent_sequences(self) -> int:
        """Sequences of max_model_len tokens that fit in the KV blocks at once."""
        return self.num_blocks // self.blocks_per_sequence

    @property
    def max_concurrency(self) -> float:
        """vLLM's 'Maximum concurrency for N tokens per request': blocks x 16 / max_model_len."""
        return self.kv_cache_tokens / self.request.max_model_len

    @property
    def replica_tokens_per_s(self) -> float:
        return max(p.tokens_per_s for p in self.roofline)

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica

    @property
    def multi_node(self) -> bool:
        """A replica spans several nodes (then each of its pods takes a whole node)."""
        return self.gpus_per_replica > self.request.gpus_per_node

    @property
    def nodes_per_replica(self) -> int:
        return max(1, math.ceil(self.gpus_per_replica / self.request.gpus_per_node))

    def nodes_for(self, replicas: int) -> int:
        """Nodes ``replicas`` replicas take: whole nodes each when multi-node, else packed onto nodes.
        The one packing rule: capacity, the placement check and the rendered pods all use it."""
        if self.multi_node:
            return replicas * self.nodes_per_replica
        return math.ceil(replicas / (self.request.gpus_per_node // self.gpus_per_replica))

    def replicas_in(self, nodes: int) -> int:
        """Replicas that fit in ``nodes`` nodes (the inverse of :meth:`nodes_for`)."""
        if self.multi_node:
            return nodes // self.nodes_per_replica
        return nodes * (self.request.gpus_per_node // self.gpus_per_replica)

    @property
    def nodes(self) -> int:
        return self.nodes_for(self.replicas)

    def to_dict(self) -> dict[str, Any]:
        r = self.request
        return {
            "kind": "serving",
            "name": r.name,
            "model": r.model.name,
            "gpu": r.gpu.name,
            "quantization": r.format.name,
            "dtype": r.dtype,
            "kv_cache_dtype": r.kv_dtype,
            "max_model_len": r.max_model_len,
            "gpu_memory_utilization": r.gpu_memory_utilization,
            "tp": self.tp,
            "pp": self.pp,
            "gpus_per_replica": self.gpus_per_replica,
            "params": r.model.params,
            "weights_bytes": round(self.weights_bytes),
            "weights_nominal_bytes": round(self.nominal_weights_bytes),
            "weights_nominal_bits": r.format.weight_bits,
            "weights_bits_per_quantized_weight": r.format.bits_per_weight,
            "weights_dequantized_per_matmul": r.format.dequantizes_per_matmul,
            "weights_per_gpu_bytes": round(self.weights_per_gpu_bytes),
            "draft_weights_per_gpu_bytes": round(self.draft_weights_per_gpu_bytes),
            "activation_bytes": round(self.activation_bytes),
            "non_torch_bytes": round(self.non_torch_bytes),
            "gpu_memory_bytes": r.gpu.memory_bytes,
            "memory_budget_bytes": round(r.gpu.memory_bytes * r.gpu_memory_utilization),
            "kv_cache_per_gpu_bytes": round(self.kv_cache_per_gpu_bytes),
            "kv_cache_source": ("num_gpu_blocks_override" if r.num_gpu_blocks_override is not None else
                                "kv_cache_memory_bytes" if r.kv_cache_memory_bytes is not None else
                                "gpu_memory_utilization"),
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "kv_bytes_per_token_per_gpu": self.kv_bytes_per_token_per_gpu,
            "block_size_tokens": BLOCK_SIZE,
            "num_blocks": self.num_blocks,
            "kv_cache_tokens": self.kv_cache_tokens,
            "blocks_per_sequence": self.blocks_per_sequence,
            "max_concurrent_sequences": self.max_concurrent_sequences,
            "max_concurrency": self.max_concurrency,
            "roofline": [p.to_dict() for p in self.roofline],
            "replica_tokens_per_s": self.replica_tokens_per_s,
            "latency": self.latency.to_dict() if self.latency else None,
            "speculative": self.speculation.to_dict() if self.speculation else None,
            "target_tokens_per_s": r.target_tokens_per_s,
            "replicas": self.replicas,
            "gpus": self.gpus,
            "nodes": self.nodes,
            "warnings": list(self.warnings),
        }


# ---------------------------------------------------------------- arithmetic


def speculative_speedup(acceptance_rate: float, num_tokens: int, cost_ratio: float) -> tuple[float, float]:
    """Leviathan et al. 2023: (expected tokens per target step, expected wall-clock speedup)."""
    a, g = acceptance_rate, num_tokens
    if not 0 < a < 1:
        raise PlanError(f"acceptance rate must be between 0 and 1, got {a}")
    tokens = (1 - a ** (g + 1)) / (1 - a)
    return tokens, tokens / (g * cost_ratio + 1)


def _decode_step_s(
    req: ServingRequest, model: LlmArchitecture, fmt: NumericFormat, tp: int, pp: int, batch: int, context: int
) -> tuple[float, str]:
    """One decode step of ``batch`` sequences at ``context`` tokens on one replica (tp x pp GPUs)."""
    w = weight_bytes(model, fmt, req.dtype)
    share, touched_share = 0.0, 1.0
    if model.is_moe:  # experts a batch touches: E (1 - (1 - k/E)^B)
        touched = model.experts * (1 - (1 - model.experts_per_token / model.experts) ** batch)
        shapes = model.linear_shapes()
        expert_linear = sum(i * o * n for name, i, o, n in shapes if name not in ("q", "k", "v", "o"))
        share = expert_linear / sum(i * o * n for _, i, o, n in shapes)  # experts' part of the linear weights
        touched_share = touched / model.experts
        linear = w.layer_linear * ((1 - share) + share * touched_share)
        weights = model.layers * (linear + w.layer_other) + w.embedding / model.vocab * batch + w.lm_head
    else:
        weights = w.total - w.embedding + w.embedding / model.vocab * batch
    weights += dequantize_bytes(model, fmt, req.dtype, batch, share, touched_share)
    kv = batch * context * kv_bytes_per_token_per_gpu(model, tp, pp, req.kv_dtype, req.dtype) * tp * pp
    gpus = tp * pp
    mem_s = (weights + kv) / (gpus * req.gpu.hbm_bandwidth_gb_s * GB * HBM_EFFICIENCY)
    flops = batch * (2 * model.matmul_params_per_token + 4 * model.layers * model.q_dim * context)
    peak = req.gpu.dense_tflops(fmt.compute if fmt.compute != "int8" else "int8") * 1e12
    compute_s = flops / (gpus * peak * COMPUTE_EFFICIENCY)
    comm = 2 * model.layers * ALLREDUCE_LATENCY_S / pp if tp > 1 else 0.0
    return max(mem_s, compute_s) + comm, ("memory" if mem_s >= compute_s else "compute")


def prefill_s(
    req: ServingRequest, model: LlmArchitecture, fmt: NumericFormat, tp: int, prompt_len: int
) -> tuple[float, str]:
    """One request's prefill of ``prompt_len`` tokens (its time to first token), and what bounds it."""
    w = weight_bytes(model, fmt, req.dtype)
    p = prompt_len
    kv_written = p * kv_cache_bytes_per_token(model, req.kv_dtype, req.dtype)
    mem_s = (w.total + dequantize_bytes(model, fmt, req.dtype, p) + kv_written) / (tp * req.gpu.hbm_bandwidth_gb_s * GB * HBM_EFFICIENCY)
    flops = 2 * model.matmul_params_per_token * p + 2 * model.layers * model.q_dim * p * p
    peak = req.gpu.dense_tflops(fmt.compute if fmt.compute != "int8" else "int8") * 1e12
    compute_s = flops / (tp * peak * COMPUTE_EFFICIENCY)
    comm = 0.0
    if tp > 1:  # two ring all-reduces of the hidden states per layer
        size = p * model.hidden * 2
        bw = req.gpu.nvlink_unidirectional_gb_s * GB * NVLINK_EFFICIENCY
        comm = 2 * model.layers * (ALLREDUCE_LATENCY_S + 2 * (tp - 1) / tp * size / bw)
    return max(mem_s, compute_s) + comm, ("memory" if mem_s >= compute_s else "compute")


def _tp_problem(model: LlmArchitecture, fmt: NumericFormat, tp: int) -> str | None:
    if model.heads % tp:
        return f"TP {tp} does not divide {model.title}'s {model.heads} attention heads"
    if model.kv_heads % tp and tp % model.kv_heads:
        return f"TP {tp} and {model.kv_heads} KV heads: one must divide the other"
    if fmt.group_size and fmt.groups_along_input:
        for name, i, _o, _ in model.linear_shapes():
            split_in = i // tp if name in ("o", "down", "fc2") else i
            if i % tp or split_in % fmt.group_size:
                return (
                    f"TP {tp} splits {name}_proj's {i} input features into {i / tp:g}, not a multiple of "
                    f"the {fmt.name} group size {fmt.group_size}"
                )
    return None


def _memory_at(req: ServingRequest, tp: int, pp: int) -> dict[str, float]:
    fmt, m = req.format, req.model
    w = weight_bytes(m, fmt, req.dtype)
    weights_gpu = w.per_gpu(tp, pp, m.tied_embeddings)
    draft_gpu = 0.0
    kv_tok_gpu = kv_bytes_per_token_per_gpu(m, tp, pp, req.kv_dtype, req.dtype)
    if req.draft is not None:
        dw = weight_bytes(req.draft, numeric_format(req.dtype), req.dtype)
        draft_gpu = dw.per_gpu(tp, pp, req.draft.tied_embeddings)
        kv_tok_gpu += kv_bytes_per_token_per_gpu(req.draft, tp, pp, req.kv_dtype, req.dtype)
    acts = activation_peak_bytes(m, tp, req.max_num_batched_tokens, req.max_num_seqs)
    acts += dequantized_copy_bytes(m, fmt, tp, req.dtype)
    budget = req.gpu.memory_bytes * req.gpu_memory_utilization
    kv = budget - weights_gpu - draft_gpu - acts - NON_TORCH_BYTES
    blocks = max(0, math.floor(kv / (BLOCK_SIZE * kv_tok_gpu))) if kv > 0 else 0
    if req.num_gpu_blocks_override is not None:  # given: the blocks, whatever memory is left
        blocks = req.num_gpu_blocks_override
        kv = blocks * BLOCK_SIZE * kv_tok_gpu
    elif req.kv_cache_memory_bytes is not None:
        kv = req.kv_cache_memory_bytes
        blocks = math.floor(kv / (BLOCK_SIZE * kv_tok_gpu))
    used = weights_gpu + draft_gpu + acts + NON_TORCH_BYTES + max(kv, 0.0)
    return {
        "weights_total": w.total, "weights_gpu": weights_gpu, "draft_gpu": draft_gpu, "acts": acts,
        "budget": budget, "kv": kv, "kv_tok_gpu": kv_tok_gpu, "blocks": blocks, "used": used,
    }


def _kv_given(req: ServingRequest) -> bool:
    return req.num_gpu_blocks_override is not None or req.kv_cache_memory_bytes is not None


def _fits(req: ServingRequest, mem: dict[str, float]) -> bool:
    enough = mem["blocks"] >= math.ceil(req.max_model_len / BLOCK_SIZE)
    return enough and (not _kv_given(req) or mem["used"] <= req.gpu.memory_bytes)


def _validate(req: ServingRequest) -> None:
    require_positive(
        gpus_per_node=req.gpus_per_node, max_model_len=req.max_model_len, tp=req.tp, pp=req.pp,
        replicas=req.replicas, target_tokens_per_s=req.target_tokens_per_s,
        num_speculative_tokens=req.num_speculative_tokens, max_num_seqs=req.max_num_seqs,
        max_num_batched_tokens=req.max_num_batched_tokens, avg_context_len=req.avg_context_len,
        prompt_len=req.prompt_len, output_len=req.output_len, kv_cache_memory_bytes=req.kv_cache_memory_bytes, num_gpu_blocks_override=req.num_gpu_blocks_override,
    )
    if req.kv_cache_memory_bytes is not None and req.num_gpu_blocks_override is not None:
        raise PlanError("give the KV cache as bytes or as blocks, not both")
    if not 0 < req.gpu_memory_utilization <= 1:
        raise PlanError(f"gpu-memory-utilization must be in (0, 1], got {req.gpu_memory_utilization}")
    fmt = req.format
    if fmt.compute == "fp8" and req.gpu.fp8_dense_tflops is None:
        raise PlanError(f"{req.gpu.name} has no FP8 tensor cores: {fmt.name} weights need Hopper or newer")
    kv_bytes_per_value(req.kv_dtype, req.dtype)
    m = req.model
    if m.learned_positions and req.max_model_len > m.learned_positions:
        raise PlanError(
            f"{m.title} has learned positions for {m.learned_positions} tokens; max-model-len "
            f"{req.max_model_len} is longer"
        )
    if req.draft is not None:
        if req.draft.family != m.family or req.draft.vocab != m.vocab:
            raise PlanError(
                f"draft {req.draft.title} ({req.draft.family}, vocab {req.draft.vocab}) does not share "
                f"{m.title}'s tokenizer ({m.family}, vocab {m.vocab})"
            )
        if not 0 < req.acceptance_rate < 1:
            raise PlanError(f"acceptance rate must be between 0 and 1, got {req.acceptance_rate}")


def _layouts(req: ServingRequest) -> list[tuple[int, int]]:
    node = min(req.gpus_per_node, req.gpu.nvlink_domain_gpus)
    tps = [req.tp] if req.tp else [t for t in (1, 2, 4, 8, 16) if t <= node]
    if req.pp:
        return [(tp, req.pp) for tp in tps]
    out = [(tp, 1) for tp in tps]
    valid = [t for t in tps if _tp_problem(req.model, req.format, t) is None]
    if valid:
        out += [(max(valid), pp) for pp in range(2, req.model.layers + 1)]
    return out


def plan_serving(req: ServingRequest) -> ServingPlan:
    """The smallest TP (then PP across nodes) that holds the weights and at least one sequence of
    max_model_len tokens in the KV cache; blocks, concurrency, roofline, speculation, replicas."""
    _validate(req)
    m, fmt = req.model, req.format
    problems: list[str] = []
    chosen: tuple[int, int, dict[str, float]] | None = None
    last: tuple[int, int, dict[str, float]] | None = None
    for tp, pp in _layouts(req):
        why = _tp_problem(m, fmt, tp)
        if why:
            problems.append(why)
            continue
        if pp > m.layers:
            problems.append(f"PP {pp} is more than {m.title}'s {m.layers} layers")
            continue
        mem = _memory_at(req, tp, pp)
        last = (tp, pp, mem)
        if _fits(req, mem):
            chosen = (tp, pp, mem)
            break
    if chosen is None:
        if last is None:
            raise PlanError(f"no tensor-parallel size works for {m.title} with {fmt.name}: {'; '.join(dict.fromkeys(problems))}")
        tp, pp, mem = last
        need = math.ceil(req.max_model_len / BLOCK_SIZE) * BLOCK_SIZE * mem["kv_tok_gpu"]
        if _kv_given(req):
            short = mem["blocks"] < math.ceil(req.max_model_len / BLOCK_SIZE)
            raise PlanError(
                f"the given KV cache of {mem['blocks']:,} blocks ({gib(mem['kv'])} per GPU) at TP={tp} PP={pp} "
                + (f"holds less than one {req.max_model_len}-token sequence ({gib(need)})" if short else
                   f"with {gib(mem['weights_gpu'] + mem['draft_gpu'])} of weights, {gib(mem['acts'])} of "
                   f"activations and {gib(NON_TORCH_BYTES)} runtime needs {gib(mem['used'])}, more than an "
                   f"{req.gpu.name}'s {gib(req.gpu.memory_bytes)}")
                + "; give a smaller KV cache, a larger TP or PP, or a quantization"
            )
        ways = []
        if req.tp is not None or req.pp is not None:
            ways.append(f"try --tp {min(2 * tp, 8)}" if tp < 8 else "try --pp 2 (pipeline across nodes)")
        if not fmt.quantized:
            ways.append("a quantization (fp8, awq-int4)")
        if req.kv_dtype == "auto":
            ways.append("--kv-dtype fp8")
        ways.append("a shorter --max-model-len")
        raise PlanError(
            f"{m.title} {fmt.name} needs {gb(mem['weights_total'])} of weights per replica, "
            f"{gb(mem['weights_gpu'])} per GPU at TP={tp} PP={pp}; with the activation peak "
            f"{gib(mem['acts'])} and {gib(NON_TORCH_BYTES)} runtime overhead, the "
            f"{req.gpu_memory_utilization:g} x {gib(req.gpu.memory_bytes)} budget of an {req.gpu.name} leaves "
            f"{gib(max(mem['kv'], 0))} for the KV cache but one {req.max_model_len}-token sequence needs "
            f"{gib(need)}; {', or '.join(ways)}"
        )
    tp, pp, mem = chosen

    context = req.avg_context_len or max(1, req.max_model_len // 2)
    capacity = int(mem["blocks"] * BLOCK_SIZE // context)
    batches = sorted({b for b in ROOFLINE_BATCHES if b <= min(capacity, req.max_num_seqs)}
                     | {max(1, min(capacity, req.max_num_seqs))})
    points = []
    for b in batches:
        step, bound = _decode_step_s(req, m, fmt, tp, pp, b, context)
        points.append(RooflinePoint(b, step, b / step, bound))

    prompt = req.prompt_len or context
    ttft, prefill_bound = prefill_s(req, m, fmt, tp, prompt)
    # one request alone: its pipeline stages run one after the other (PP adds no speed)
    single_step, _ = _decode_step_s(req, m, fmt, tp, 1, 1, prompt + (req.output_len or 0) // 2)
    latency = Latency(prompt, ttft, prefill_bound, single_step, req.output_len)

    spec = None
    if req.draft is not None:
        t_target, _ = _decode_step_s(req, m, fmt, tp, pp, 1, context)
        t_draft, _ = _decode_step_s(req, req.draft, numeric_format(req.dtype), tp, pp, 1, context)
        ratio = t_draft / t_target
        tokens, speedup = speculative_speedup(req.acceptance_rate, req.num_speculative_tokens, ratio)
        spec = Speculation(req.draft.name, req.num_speculative_tokens, req.acceptance_rate, ratio, tokens, speedup)

    best = max(p.tokens_per_s for p in points)
    if req.replicas is not None:
        replicas = req.replicas
    elif req.target_tokens_per_s is not None:
        replicas = max(1, math.ceil(req.target_tokens_per_s / best))
    else:
        replicas = 1
    warnings = []
    if m.max_context and req.max_model_len > m.max_context:
        warnings.append(f"max-model-len {req.max_model_len} exceeds {m.title}'s context of {m.max_context}")
    if tp > m.kv_heads:
        warnings.append(f"TP {tp} > {m.kv_heads} KV heads: each GPU keeps a replicated KV head")
    if req.replicas is not None and req.target_tokens_per_s is not None and replicas * best < req.target_tokens_per_s:
        warnings.append(
            f"{replicas} replicas give about {replicas * best:,.0f} tokens/s, below the target "
            f"{req.target_tokens_per_s:,.0f}"
        )
    kv_tok = kv_cache_bytes_per_token(m, req.kv_dtype, req.dtype)
    if req.draft is not None:
        kv_tok += kv_cache_bytes_per_token(req.draft, req.kv_dtype, req.dtype)
    return ServingPlan(
        request=req, tp=tp, pp=pp, weights_bytes=mem["weights_total"], weights_per_gpu_bytes=mem["weights_gpu"],
        draft_weights_per_gpu_bytes=mem["draft_gpu"], activation_bytes=mem["acts"], non_torch_bytes=NON_TORCH_BYTES,
        kv_cache_per_gpu_bytes=max(0.0, mem["kv"]), kv_bytes_per_token=kv_tok,
        kv_bytes_per_token_per_gpu=mem["kv_tok_gpu"], num_blocks=int(mem["blocks"]), roofline=tuple(points),
        speculation=spec, replicas=replicas, warnings=tuple(warnings), latency=latency,
    )


def check_serving(req: ServingRequest) -> ServingPlan:
    """Preflight: the plan, or PlanError when the deployment cannot hold one full sequence."""
    return plan_serving(req)


def serving_request_from_deployment(
    dep: Any, gpu_name: str, gpus_per_node: int, custom_models: dict[str, Any] | None = None,
    custom_gpus: dict[str, Any] | None = None,
) -> ServingRequest:
    """Map a blueprint ``ServingDeployment`` (aiinfra.spec.models) onto a request.

    The one request builder: the blueprint path (:func:`aiinfra.plan.cluster.plan_blueprint`) and
    ``aiinfra size serve`` (which builds a ``ServingDeployment`` from its flags) both call it.
    ``quantization: none`` serves in ``dtype``. KeyError for unknown model / GPU / draft names.
    """
    auto = lambda v: None if v == "auto" else v  # noqa: E731
    spec = dep.speculative
    speculation: dict[str, Any] = {}
    if spec is not None:
        speculation = {"draft": resolve_model(spec.draft_model, custom_models),
                       "num_speculative_tokens": spec.num_tokens, "acceptance_rate": spec.acceptance_rate}
    return ServingRequest(
        model=resolve_model(dep.model, custom_models),
        gpu=resolve_gpu(gpu_name, custom_gpus),
        gpus_per_node=gpus_per_node,
        weight_format=dep.dtype if dep.quantization == "none" else dep.quantization,
        dtype=dep.dtype,
        kv_dtype=dep.kv_cache_dtype,
        max_model_len=dep.max_model_len,
        gpu_memory_utilization=dep.gpu_memory_utilization,
        tp=auto(dep.tp),
        pp=auto(dep.pp),
        replicas=auto(dep.replicas),
        target_tokens_per_s=dep.target_tokens_per_s,
        name=dep.name,
        **speculation,
    )
