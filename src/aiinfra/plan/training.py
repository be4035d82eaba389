"""Training capacity: memory per GPU, parallel layout search, step time, token budget.

Formulas (docs/planner.md states them with their sources):
- Model states per parameter, mixed-precision Adam (Rajbhandari et al., SC20, K = 12): weights
  ``w`` bytes, gradients ``g`` bytes, optimizer 12 bytes (fp32 master, momentum, variance).
  Megatron keeps fp32 gradients (``g = 4``, Megatron-LM docs: 18 bytes, or 6 + 12/d with the
  distributed optimizer); DeepSpeed keeps 16-bit gradients (``g = 2``: 16 bytes, ZeRO stages
  4 + 12/d, 2 + 14/d, 16/d). Sharding is over the data-parallel group (times context parallel),
  and only as far as the framework shards (:data:`FRAMEWORK_ZERO_STAGES`).
- Activations per layer (Korthikanti et al. 2022), generalised to GQA and gated MLPs; with
  flash attention the s^2 attention-score terms are not stored.
- Training FLOPs per token: 6 x (weights that multiply) + 12 x layers x s x (heads x head_dim)
  (PaLM's convention, attention counted non-causal); hardware FLOPs add the recomputed forward.
- Step time: compute at an efficiency x (1 + (p - 1)/(v m)) + exposed communication.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from aiinfra.catalog.defaults import DEFAULT_INTER_NODE_LINK, DEFAULT_NODE_OVERHEAD_W, DEFAULT_PUE
from aiinfra.catalog.gpus import GpuModel, resolve_gpu
from aiinfra.catalog.links import link_rate
from aiinfra.catalog.models import LlmArchitecture, resolve_model
from aiinfra.plan.common import DAY_S, GB, GIB, HOUR_S, PlanError, divisors, gib, require_positive

# ---------------------------------------------------------------- assumptions (documented, overridable)

#: Fraction of the dense tensor-core peak the GPUs sustain while computing (hardware FLOPs,
#: recomputation included), before pipeline bubbles and exposed communication. Calibrated so that
#: Llama 3 405B on 8,192 H100 (TP 8, PP 16, DP 64) lands near the Llama 3 paper's 43 % MFU.
COMPUTE_EFFICIENCY: dict[str, float] = {"bf16": 0.50, "fp8": 0.35}
#: Achievable fraction of a link's one-direction peak for NCCL collectives.
LINK_EFFICIENCY = 0.8
#: Fraction of each communication that is NOT hidden behind compute.
TP_EXPOSED = 0.3  # Transformer Engine overlaps part of the TP all-gather / reduce-scatter
DP_EXPOSED = 0.1  # gradient reduce-scatter / parameter all-gather overlapped with backward / forward
CP_EXPOSED = 0.5  # ring attention K/V exchange, partly overlapped with attention blocks
#: CUDA context, cuBLAS workspaces, NCCL buffers and allocator fragmentation, per GPU.
RUNTIME_OVERHEAD_BYTES = 3 * GIB
#: Global batch when the request gives none: about 4M tokens (Llama 2 / GPT-3 scale).
DEFAULT_GLOBAL_BATCH_TOKENS = 4 * 2**20

RECOMPUTE_LEVELS = ("none", "selective", "full")
FRAMEWORKS = ("megatron", "deepspeed")
#: ZeRO stages each framework runs as aiinfra renders it (the plan's stage is what the job runs).
#: Megatron-LM: ``--use-distributed-optimizer`` shards the optimizer states (fp32 main weights and
#: Adam moments) over the data-parallel ranks and keeps the gradient buffer and the weights whole
#: (Megatron-LM docs/source/api-guide/dist_optimizer.md: 6 + 12/d bytes per parameter with bf16
#: weights and fp32 gradients): ZeRO stage 1; without it, stage 0. Megatron-LM's FSDP
#: (``--use-torch-fsdp2`` from core_r0.10, ``--use-custom-fsdp`` from core_r0.12) depends on the
#: Megatron-LM commit, which versions.images does not pin (the image is NGC PyTorch with a checkout
#: at /opt/megatron-lm): not offered. DeepSpeed: ``zero_optimization.stage`` 0-3.
FRAMEWORK_ZERO_STAGES: dict[str, tuple[int, ...]] = {"megatron": (0, 1), "deepspeed": (0, 1, 2, 3)}


# ---------------------------------------------------------------- request and results


@dataclass(frozen=True)
class TrainingRequest:
    """One training job. ``None`` in tp/pp/dp/cp/vpp/recompute means 'auto' (searched)."""

    model: LlmArchitecture
    gpu: GpuModel
    gpus: int
    gpus_per_node: int = 8
    tp: int | None = None
    pp: int | None = None
    dp: int | None = None
    cp: int | None = 1
    vpp: int | None = 1
    seq_len: int = 8192
    micro_batch: int = 1
    global_batch: int | None = None  # sequences per step
    global_batch_tokens: int | None = None  # tokens per step (alternative)
    precision: str = "bf16"
    framework: str = "megatron"
    zero_stage: int | None = 1  # None: auto (the fastest stage that fits)
    fsdp: bool = False
    recompute: str | None = "selective"
    sequence_parallel: bool = True
    distributed_optimizer: bool = True
    flash_attention: bool = True
    tokens: float | None = None  # token budget
    mfu: float | None = None  # end-to-end model FLOPs utilisation (overrides the estimate)
    achieved_tflops: float | None = None  # end-to-end hardware TFLOP/s per GPU (overrides)
    allow_tp_across_nodes: bool = False
    inter_node_link: str = DEFAULT_INTER_NODE_LINK  # one compute rail per GPU
    node_overhead_w: float = DEFAULT_NODE_OVERHEAD_W
    pue: float = DEFAULT_PUE
    name: str = ""


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    dp: int
    cp: int
    vpp: int
    micro_batch: int
    global_batch: int  # sequences
    recompute: str
    zero_stage: int = 1  # the sharding stage the framework runs (runnable_stages)

    @property
    def num_microbatches(self) -> int:
        return self.global_batch // (self.dp * self.micro_batch)

    def short(self) -> str:
        v = f" VPP{self.vpp}" if self.vpp > 1 else ""
        return f"TP{self.tp} PP{self.pp} DP{self.dp} CP{self.cp}{v}"


@dataclass(frozen=True)
class TrainingMemory:
    """Per-GPU memory of the heaviest pipeline stage, in bytes."""

    stage: str  # which stage is the heaviest: only, first or last
    params_per_gpu: int
    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    overhead_bytes: float
    gpu_memory_bytes: int

    @property
    def model_states_bytes(self) -> float:
        return self.weights_bytes + self.gradients_bytes + self.optimizer_bytes

    @property
    def total_bytes(self) -> float:
        return self.model_states_bytes + self.activations_bytes + self.overhead_bytes

    @property
    def headroom_bytes(self) -> float:
        return self.gpu_memory_bytes - self.total_bytes

    @property
    def fits(self) -> bool:
        return self.headroom_bytes >= 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "params_per_gpu": self.params_per_gpu,
            "weights_bytes": round(self.weights_bytes),
            "gradients_bytes": round(self.gradients_bytes),
            "optimizer_bytes": round(self.optimizer_bytes),
            "activations_bytes": round(self.activations_bytes),
            "overhead_bytes": round(self.overhead_bytes),
            "total_bytes": round(self.total_bytes),
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "headroom_bytes": round(self.headroom_bytes),
            "fits": self.fits,
        }


@dataclass(frozen=True)
class StepTime:
    """Bottom-up step-time estimate, seconds (communication: the exposed part only)."""

    compute_s: float
    bubble_s: float
    bubble_fraction: float
    tp_comm_s: float
    cp_comm_s: float
    pp_comm_s: float
    dp_comm_s: float

    @property
    def total_s(self) -> float:
        return self.compute_s + self.bubble_s + self.tp_comm_s + self.cp_comm_s + self.pp_comm_s + self.dp_comm_s

    def to_dict(self) -> dict[str, float]:
        return {
            "compute_s": self.compute_s,
            "bubble_s": self.bubble_s,
            "bubble_fraction": self.bubble_fraction,
            "tp_comm_exposed_s": self.tp_comm_s,
            "cp_comm_exposed_s": self.cp_comm_s,
            "pp_comm_exposed_s": self.pp_comm_s,
            "dp_comm_exposed_s": self.dp_comm_s,
            "estimated_step_time_s": self.total_s,
        }


@dataclass(frozen=True)
class Candidate:
    layout: Layout
    memory: TrainingMemory
    time: StepTime


@dataclass(frozen=True)
class TrainingPlan:
    request: TrainingRequest
    layout: Layout
    memory: TrainingMemory
    estimate: StepTime
    step_time_s: float
    efficiency_source: str  # estimate | mfu | achieved_tflops
    model_flops_per_token: float
    hardware_flops_per_token: float
    alternatives: tuple[Candidate, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    # ----------------------------------------------------------- derived

    @property
    def tokens_per_step(self) -> int:
        return self.layout.global_batch * self.request.seq_len

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_time_s

    @property
    def mfu(self) -> float:
        peak = self.request.gpu.dense_tflops(self.request.precision) * 1e12
        return self.model_flops_per_token * self.tokens_per_s / (self.request.gpus * peak)

    @property
    def achieved_tflops(self) -> float:
        """Hardware TFLOP/s per GPU, end to end (recomputation included)."""
        return self.hardware_flops_per_token * self.tokens_per_s / self.request.gpus / 1e12

    @property
    def model_tflops(self) -> float:
        return self.model_flops_per_token * self.tokens_per_s / self.request.gpus / 1e12

    @property
    def nodes(self) -> int:
        return math.ceil(self.request.gpus / self.request.gpus_per_node)

    @property
    def training_time_s(self) -> float | None:
        return None if self.request.tokens is None else self.request.tokens / self.tokens_per_s

    @property
    def gpu_hours(self) -> float | None:
        t = self.training_time_s
        return None if t is None else t * self.request.gpus / HOUR_S

    @property
    def power_w(self) -> float:
        """IT power of the job's nodes at GPU TDP (facility power: x PUE)."""
        r = self.request
        return r.gpus * r.gpu.tdp_w + self.nodes * r.node_overhead_w

    @property
    def energy_mwh(self) -> float | None:
        t = self.training_time_s
        return None if t is None else self.power_w * self.request.pue * t / HOUR_S / 1e6

    def to_dict(self) -> dict[str, Any]:
        r, lay = self.request, self.layout
        t = self.training_time_s
        return {
            "kind": "training",
            "name": r.name,
            "model": r.model.name,
            "gpu": r.gpu.name,
            "gpus": r.gpus,
            "nodes": self.nodes,
            "params": r.model.params,
            "active_params": r.model.active_params,
            "layout": {
                "tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "cp": lay.cp, "vpp": lay.vpp,
                "micro_batch": lay.micro_batch, "num_microbatches": lay.num_microbatches,
                "global_batch": lay.global_batch, "global_batch_tokens": self.tokens_per_step,
                "seq_len": r.seq_len, "recompute": lay.recompute,
                "sequence_parallel": r.sequence_parallel and lay.tp > 1,
                "zero_stage": lay.zero_stage, "precision": r.precision, "framework": r.framework,
            },
            "memory": self.memory.to_dict(),
            "model_flops_per_token": self.model_flops_per_token,
            "hardware_flops_per_token": self.hardware_flops_per_token,
            "step": self.estimate.to_dict(),
            "step_time_s": self.step_time_s,
            "efficiency_source": self.efficiency_source,
            "tokens_per_s": self.tokens_per_s,
            "tokens_per_s_per_gpu": self.tokens_per_s / r.gpus,
            "mfu": self.mfu,
            "model_tflops": self.model_tflops,
            "achieved_tflops": self.achieved_tflops,
            "tokens": r.tokens,
            "training_time_s": t,
            "training_time_days": None if t is None else t / DAY_S,
            "gpu_hours": self.gpu_hours,
            "power_w": self.power_w,
            "energy_mwh": self.energy_mwh,
            "alternatives": [
                {
                    "tp": c.layout.tp, "pp": c.layout.pp, "dp": c.layout.dp, "cp": c.layout.cp,
                    "vpp": c.layout.vpp, "recompute": c.layout.recompute,
                    "total_bytes": round(c.memory.total_bytes), "estimated_step_time_s": c.time.total_s,
                }
                for c in self.alternatives
            ],
            "warnings": list(self.warnings),
        }


# ---------------------------------------------------------------- memory


def bytes_per_param(request: TrainingRequest) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes per parameter before sharding."""
    grads = 4.0 if request.framework == "megatron" else 2.0
    return 2.0, grads, 12.0


def runnable_stages(request: TrainingRequest) -> tuple[int, ...]:
    """ZeRO stages the request's framework runs with its switches (see FRAMEWORK_ZERO_STAGES)."""
    if request.framework == "megatron":
        return (1,) if request.distributed_optimizer else (0,)
    return (3,) if request.fsdp else FRAMEWORK_ZERO_STAGES[request.framework]


def sharding_stage(request: TrainingRequest) -> int:
    """The ZeRO stage the framework runs for a request that gives one: Megatron's is set by the
    distributed optimizer (1 with it, 0 without); DeepSpeed's is ``zero_stage`` (3 with ``fsdp``)."""
    if request.framework == "megatron" or request.fsdp:
        return runnable_stages(request)[0]
    if request.zero_stage is None:
        raise ValueError("zero stage is 'auto': runnable_stages() lists the options")
    return request.zero_stage


def sharding_problem(
    framework: str, zero_stage: int | None, fsdp: bool, distributed_optimizer: bool, stage_given: bool = True
) -> str | None:
    """Why the framework cannot run the asked sharding, or None. ``stage_given``: the stage was
    written down (a stage that disagrees with Megatron's distributed_optimizer switch is refused)."""
    if framework != "megatron":
        return None
    if fsdp:
        return ("Megatron-LM's FSDP (--use-torch-fsdp2, --use-custom-fsdp) depends on a Megatron-LM commit that "
                "versions.images does not pin: aiinfra runs Megatron with the distributed optimizer only "
                "(ZeRO stage 1)")
    if zero_stage is not None and zero_stage not in FRAMEWORK_ZERO_STAGES["megatron"]:
        return (f"Megatron-LM cannot run ZeRO stage {zero_stage}: its distributed optimizer shards the optimizer "
                "states only (ZeRO stage 1; gradients and weights stay whole on every data-parallel rank), so the "
                "job would hold more memory per GPU than planned")
    runs = 1 if distributed_optimizer else 0
    if stage_given and zero_stage is not None and zero_stage != runs:
        return (f"zero_stage: {zero_stage} with distributed_optimizer: {str(distributed_optimizer).lower()}: "
                f"Megatron-LM runs ZeRO stage 1 with the distributed optimizer and stage 0 without")
    return None


def job_sharding_problem(job: Any) -> str | None:
    """:func:`sharding_problem` of a blueprint ``TrainingJob`` (its zero_stage counts as given only
    when the blueprint writes it)."""
    given = "zero_stage" in getattr(job, "model_fields_set", {"zero_stage"})
    return sharding_problem(job.framework, job.zero_stage, job.fsdp, job.distributed_optimizer, given)


def model_state_bytes(
    params: float, shards: int, stage: int, weight_bytes: float = 2, grad_bytes: float = 2, optimizer_bytes: float = 12
) -> tuple[float, float, float]:
    """Per-GPU (weights, gradients, optimizer) bytes for ``params`` parameters sharded ZeRO-style
    over ``shards`` data-parallel ranks (Rajbhandari et al., SC20, section 5)."""
    if stage not in (0, 1, 2, 3):
        raise PlanError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage}")
    w = params * weight_bytes / (shards if stage >= 3 else 1)
    g = params * grad_bytes / (shards if stage >= 2 else 1)
    o = params * optimizer_bytes / (shards if stage >= 1 else 1)
    return w, g, o


def activation_bytes_per_layer(
    model: LlmArchitecture,
    seq_len: int,
    micro_batch: int,
    tp: int = 1,
    sequence_parallel: bool = False,
    recompute: str = "none",
    cp: int = 1,
    flash_attention: bool = True,
) -> float:
    """Activation bytes one transformer layer keeps for backward, one micro-batch, 16-bit.

    Korthikanti et al. 2022 (GPT: dropout, 4h GELU MLP, multi-head attention) give
    ``sbh(34 + 5as/h)``; this is the same count per tensor, generalised:
    replicated across TP unless sequence parallel: 2 norm inputs (4sbh), QKV input (2sbh),
    MLP input (2sbh), dropout masks (2sbh if dropout); split by TP: Q and attention output
    (2sb x q_dim each), K and V (2sb x kv_dim each), MLP intermediates (gated: 6sbf;
    GELU: 4sbf) times experts per token; attention scores 5as^2b (2as^2b without dropout)
    unless flash attention or selective recomputation drops them.
    ``full`` recomputation keeps only the layer input (2sbh, / t with sequence parallel).
    """
    s = seq_len / cp
    b = micro_batch
    h = model.hidden
    if recompute == "full":
        return 2 * s * b * h / (tp if sequence_parallel else 1)
    replicated = (8 + (2 if model.dropout else 0)) * s * b * h
    mlp = (6 if model.gated_mlp else 4) * s * b * model.ffn_hidden * model.experts_per_token
    split = s * b * (4 * model.q_dim + 4 * model.kv_dim) + mlp
    if flash_attention:
        split += 4 * model.heads * s * b  # fp32 log-sum-exp per query row
    elif recompute != "selective":
        split += (5 if model.dropout else 2) * model.heads * s * (s * cp) * b
    return replicated / (tp if sequence_parallel else 1) + split / tp


def _stage_layers(layers: int, pp: int) -> int:
    """Layers of the largest pipeline stage."""
    return math.ceil(layers / pp)


def stage_layer_counts(layers: int, pp: int) -> list[int]:
    """Layers per pipeline stage. Even when ``pp`` divides ``layers``; otherwise the middle stages
    take ceil(layers / pp) and the first and last stages share the rest, as Llama 3 405B does on
    16 stages (7, 8 x 14, 7) and Megatron's first/last-stage options allow."""
    if pp == 1:
        return [layers]
    if layers % pp == 0:
        return [layers // pp] * pp
    mid = math.ceil(layers / pp)
    rest = layers - (pp - 2) * mid
    if 2 <= rest <= 2 * mid:
        return [rest // 2] + [mid] * (pp - 2) + [rest - rest // 2]
    extra = layers % pp
    return [layers // pp + (1 if i < extra else 0) for i in range(pp)]


def training_memory(request: TrainingRequest, layout: Layout) -> TrainingMemory:
    """Per-GPU memory of the heaviest pipeline stage.

    Stage i of a 1F1B pipeline holds the activations of min(p - i, m) micro-batches; the
    interleaved schedule multiplies them by 1 + (p - 1)/(p v) (Korthikanti et al. 2022).
    The first stage also holds the embedding, the last the output projection and the logits.
    """
    m, lay = request.model, layout
    tp, pp = lay.tp, lay.pp
    sp = request.sequence_parallel and tp > 1
    emb = m.embedding_params / tp
    # with PP the last stage holds the output projection (a copy of the embedding when tied)
    head = (m.vocab * m.hidden if (m.tied_embeddings and pp > 1) else m.lm_head_params) / tp
    per_layer = activation_bytes_per_layer(
        m, request.seq_len, lay.micro_batch, tp, sp, lay.recompute, lay.cp, request.flash_attention
    )
    interleave = 1 + (pp - 1) / (pp * lay.vpp) if lay.vpp > 1 else 1.0
    s, b, h = request.seq_len / lay.cp, lay.micro_batch, m.hidden
    working = 0.0
    if lay.recompute == "full":  # one layer's full activations while it is recomputed
        working = activation_bytes_per_layer(
            m, request.seq_len, lay.micro_batch, tp, sp, "selective", lay.cp, request.flash_attention
        )
    # Korthikanti: embedding dropout sbhp/t; output layer 4sbh/t + fp32 logits 4sbV/t
    output_act = 4 * s * b * h / tp + 4 * s * b * m.vocab / tp

    w_b, g_b, o_b = bytes_per_param(request)
    stage = lay.zero_stage
    shards = lay.dp * lay.cp
    counts = stage_layer_counts(m.layers, pp)
    # the heaviest stage is the first, the last, or the first stage of each distinct layer count
    # (later stages hold fewer micro-batches): no need to look at every stage
    first_of: dict[int, int] = {}
    for i, n_layers in enumerate(counts):
        first_of.setdefault(n_layers, i)
    best: TrainingMemory | None = None
    for i in sorted({0, pp - 1, *first_of.values()}):
        n_layers = counts[i]
        in_flight = min(pp - i, lay.num_microbatches)
        params = n_layers * m.layer_params / tp
        acts = n_layers * per_layer * in_flight * interleave + working
        if i == 0:
            params += emb
            acts += (s * b * h * in_flight / tp) if m.dropout else 0.0
        if i == pp - 1:
            params += head + m.norm_params
            acts += output_act
        name = "only" if pp == 1 else ("first" if i == 0 else "last" if i == pp - 1 else f"stage {i}")
        w, g, o = model_state_bytes(params, shards, stage, w_b, g_b, o_b)
        mem = TrainingMemory(name, round(params), w, g, o, acts, RUNTIME_OVERHEAD_BYTES, request.gpu.memory_bytes)
        if best is None or mem.total_bytes > best.total_bytes:
            best = mem
    assert best is not None
    return best


# ---------------------------------------------------------------- FLOPs and time


def model_flops_per_token(model: LlmArchitecture, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul weights + 12 x layers x seq x attention width."""
    return 6 * model.matmul_params_per_token + 12 * model.layers * seq_len * model.q_dim


def hardware_flops_per_token(model: LlmArchitecture, seq_len: int, recompute: str) -> float:
    """Model FLOPs plus the recomputed forward: full adds 2 x the layers' weights + the forward
    attention (4 x layers x seq x width); selective adds the forward attention only."""
    base = model_flops_per_token(model, seq_len)
    attention_fwd = 4 * model.layers * seq_len * model.q_dim
    if recompute == "full":
        return base + 2 * (model.matmul_params_per_token - model.vocab * model.hidden) + attention_fwd
    if recompute == "selective":
        return base + attention_fwd
    return base


def megatron_training_time_s(tokens: float, params: float, gpus: int, tflops_per_gpu: float) -> float:
    """Narayanan et al. (SC21) eq. 4: end-to-end time ~ 8 T P / (n X) (full recomputation)."""
    return 8 * tokens * params / (gpus * tflops_per_gpu * 1e12)


def pipeline_bubble_fraction(pp: int, num_microbatches: int, vpp: int = 1) -> float:
    """(p - 1) / (v m): bubble time over ideal compute time (Narayanan et al. SC21)."""
    return (pp - 1) / (vpp * num_microbatches)


def _ring_s(size_bytes: float, ranks: int, bandwidth_b_s: float) -> float:
    """All-gather or reduce-scatter of ``size_bytes`` (whole tensor) over a ring of ``ranks``."""
    if ranks <= 1:
        return 0.0
    return (ranks - 1) / ranks * size_bytes / bandwidth_b_s


def step_time(request: TrainingRequest, layout: Layout, memory: TrainingMemory | None = None) -> StepTime:
    r, m, lay = request, request.model, layout
    peak = r.gpu.dense_tflops(r.precision) * 1e12
    eff = COMPUTE_EFFICIENCY.get(r.precision, COMPUTE_EFFICIENCY["bf16"])
    tokens = lay.global_batch * r.seq_len
    # uneven stages: the pipeline runs at the pace of the stage with the most layers
    imbalance = _stage_layers(m.layers, lay.pp) * lay.pp / m.layers
    compute = tokens * hardware_flops_per_token(m, r.seq_len, lay.recompute) / (r.gpus * peak * eff) * imbalance
    bubble_fraction = pipeline_bubble_fraction(lay.pp, lay.num_microbatches, lay.vpp)
    bubble = compute * bubble_fraction

    nvlink = r.gpu.nvlink_unidirectional_gb_s * GB * LINK_EFFICIENCY
    ib = link_rate(r.inter_node_link).gbytes_per_s * GB * LINK_EFFICIENCY
    node = _tp_domain(r)  # GPUs that talk over NVLink: a node, or a multi-node NVLink domain
    s_local = r.seq_len / lay.cp
    act_msg = s_local * lay.micro_batch * m.hidden * 2  # one micro-batch's hidden states, bytes
    stage_layers = _stage_layers(m.layers, lay.pp)
    micro_steps = lay.num_microbatches * stage_layers  # layer passes per GPU per step

    # TP: per layer and micro-batch 4 all-gathers + 4 reduce-scatters (fwd + bwd), +2 with full recompute
    tp_bw = nvlink if lay.tp <= node else ib
    collectives = 8 + (2 if lay.recompute == "full" else 0)
    tp_comm = micro_steps * collectives * _ring_s(act_msg, lay.tp, tp_bw) * TP_EXPOSED

    # CP: ring exchange of K and V chunks per layer, forward and backward (x2 for dK, dV)
    cp_bw = nvlink if lay.tp * lay.cp <= node else ib
    kv_chunk = 2 * s_local * lay.micro_batch * m.kv_dim * 2 / lay.tp
    cp_comm = micro_steps * 3 * (lay.cp - 1) * kv_chunk / cp_bw * CP_EXPOSED if lay.cp > 1 else 0.0

    # PP: point-to-point sends exposed while the pipeline fills and drains
    pp_bw = nvlink if lay.tp * lay.cp * lay.dp * lay.pp <= node else ib
    p2p_msg = act_msg / (lay.tp if (r.sequence_parallel and lay.tp > 1) else 1)
    pp_comm = 2 * (lay.vpp * lay.pp - 1) * p2p_msg / pp_bw if lay.pp > 1 else 0.0

    # DP: gradients reduce-scatter + parameters all-gather (an all-reduce without sharding)
    mem = memory or training_memory(r, lay)
    params = mem.params_per_gpu
    shards = lay.dp * lay.cp
    dp_bw = nvlink if lay.tp * lay.cp * lay.dp <= node else ib
    _, g_b, _ = bytes_per_param(r)
    stage = lay.zero_stage
    grad_bytes = params * (g_b if r.framework == "megatron" else 2)
    volume = 2 * grad_bytes if stage == 0 else grad_bytes + params * 2
    if stage == 3:  # parameters gathered for every micro-batch's forward and backward
        volume = grad_bytes + 2 * params * 2 * lay.num_microbatches
    dp_comm = _ring_s(volume, shards, dp_bw) * DP_EXPOSED
    return StepTime(compute, bubble, bubble_fraction, tp_comm, cp_comm, pp_comm, dp_comm)


# ---------------------------------------------------------------- layout search


def _global_batch(request: TrainingRequest, dp: int) -> int:
    """Sequences per step: given, or about DEFAULT_GLOBAL_BATCH_TOKENS rounded up to dp x micro."""
    if request.global_batch is not None:
        return request.global_batch
    if request.global_batch_tokens is not None:
        return request.global_batch_tokens // request.seq_len
    unit = dp * request.micro_batch
    return max(1, math.ceil(DEFAULT_GLOBAL_BATCH_TOKENS / request.seq_len / unit)) * unit


def nvlink_reach(gpus_per_node: int, gpu: GpuModel) -> int:
    """GPUs a rank reaches over NVLink: its node's (HGX: one NVSwitch domain per node), or the whole
    domain when the domain is whole nodes (GB200 NVL72: 18 nodes of 4 GPUs, 72)."""
    domain = gpu.nvlink_domain_gpus
    if domain > gpus_per_node and domain % gpus_per_node == 0:
        return domain
    return min(gpus_per_node, domain)


def _tp_domain(request: TrainingRequest) -> int:
    return nvlink_reach(request.gpus_per_node, request.gpu)


def _layout_problem(request: TrainingRequest, tp: int, pp: int, dp: int, cp: int, explicit: bool) -> str | None:
    """Why (tp, pp, dp, cp) cannot run, or None."""
    m = request.model
    if tp * pp * dp * cp != request.gpus:
        return f"TP {tp} x PP {pp} x DP {dp} x CP {cp} = {tp * pp * dp * cp} is not the job's {request.gpus} GPUs"
    if m.heads % tp:
        return f"TP {tp} does not divide {m.heads} attention heads"
    if m.kv_heads % tp:
        return f"TP {tp} does not divide {m.kv_heads} KV heads (query groups)"
    if m.ffn_hidden % tp:
        return f"TP {tp} does not divide the FFN width {m.ffn_hidden}"
    if tp > _tp_domain(request) and not request.allow_tp_across_nodes:
        return (
            f"TP {tp} is larger than the NVLink domain ({_tp_domain(request)} GPUs); "
            "tensor parallelism across nodes must be allowed explicitly"
        )
    if request.gpus_per_node < tp <= _tp_domain(request) and _tp_domain(request) % tp:
        return f"TP {tp} does not divide the {_tp_domain(request)}-GPU NVLink domain: a TP group would leave it"
    if pp > m.layers:
        return f"PP {pp} is more than the model's {m.layers} layers"
    if m.layers < 2 * pp and m.layers % pp:
        return f"PP {pp} does not divide {m.layers} layers and leaves stages of one layer"
    if cp > 1 and request.seq_len % (2 * cp):
        return f"CP {cp} needs the sequence length {request.seq_len} to be a multiple of 2 x CP = {2 * cp}"
    gb_seqs = _global_batch(request, dp)
    if gb_seqs % (dp * request.micro_batch):
        return (
            f"the global batch of {gb_seqs} sequences is not a multiple of DP {dp} x micro-batch "
            f"{request.micro_batch} = {dp * request.micro_batch}"
        )
    return None


def _vpp_options(request: TrainingRequest, pp: int, num_microbatches: int) -> list[int]:
    if request.vpp is not None:
        return [request.vpp]
    if pp == 1 or num_microbatches < pp:
        return [1]
    # auto: only chunks of equal size (Megatron's --num-layers-per-virtual-pipeline-stage)
    layers = request.model.layers
    return [v for v in divisors(_stage_layers(layers, pp)) if v == 1 or layers % (pp * v) == 0]


def _recompute_options(request: TrainingRequest) -> tuple[str, ...]:
    return RECOMPUTE_LEVELS if request.recompute is None else (request.recompute,)


def _zero_options(request: TrainingRequest) -> list[int]:
    """Auto: every stage the framework runs; otherwise the one it runs for the given stage."""
    if request.zero_stage is None:
        return list(runnable_stages(request))
    return [sharding_stage(request)]


def _validate_request(r: TrainingRequest) -> None:
    require_positive(
        gpus=r.gpus, gpus_per_node=r.gpus_per_node, tp=r.tp, pp=r.pp, dp=r.dp, cp=r.cp,
        virtual_pipeline_stages=r.vpp, seq_len=r.seq_len, micro_batch=r.micro_batch, global_batch=r.global_batch,
        global_batch_tokens=r.global_batch_tokens, tokens=r.tokens, achieved_tflops=r.achieved_tflops,
    )
    if r.mfu is not None and not 0 < r.mfu < 1:
        raise PlanError(f"MFU must be between 0 and 1 (a fraction of peak), got {r.mfu}")
    if r.mfu is not None and r.achieved_tflops is not None:
        raise PlanError("give either an MFU or achieved TFLOP/s, not both")
    if r.global_batch is not None and r.global_batch_tokens is not None:
        raise PlanError("give either a global batch in sequences or in tokens, not both")
    if r.global_batch_tokens is not None and r.global_batch_tokens % r.seq_len:
        raise PlanError(
            f"global batch of {r.global_batch_tokens} tokens is not a whole number of {r.seq_len}-token sequences"
        )
    if r.precision not in ("bf16", "fp16", "fp8"):
        raise PlanError(f"training precision must be bf16, fp16 or fp8, got '{r.precision}'")
    if r.precision == "fp8" and r.gpu.fp8_dense_tflops is None:
        raise PlanError(f"{r.gpu.name} has no FP8 tensor cores: train in bf16")
    if r.framework not in FRAMEWORKS:
        raise PlanError(f"framework must be one of {', '.join(FRAMEWORKS)}, got '{r.framework}'")
    if r.recompute is not None and r.recompute not in RECOMPUTE_LEVELS:
        raise PlanError(f"recompute must be none, selective or full, got '{r.recompute}'")
    if r.zero_stage is not None and r.zero_stage not in (0, 1, 2, 3):
        raise PlanError(f"ZeRO stage must be 0, 1, 2 or 3, got {r.zero_stage}")
    why = sharding_problem(r.framework, r.zero_stage, r.fsdp, r.distributed_optimizer, stage_given=False)
    if why:
        raise PlanError(why)
    if r.model.learned_positions and r.seq_len > r.model.learned_positions:
        raise PlanError(
            f"{r.model.title} has learned positions for {r.model.learned_positions} tokens; "
            f"sequence length {r.seq_len} is longer"
        )
    if r.gpus > r.gpus_per_node and r.gpus % r.gpus_per_node:
        raise PlanError(f"{r.gpus} GPUs is not a whole number of {r.gpus_per_node}-GPU nodes")


def candidates(request: TrainingRequest) -> tuple[list[Candidate], list[str]]:
    """Every valid layout (with its memory and time), and why the explicitly given one failed."""
    r = request
    n = r.gpus
    explicit = all(x is not None for x in (r.tp, r.pp, r.dp, r.cp))
    tps = [r.tp] if r.tp else [t for t in divisors(n) if t <= max(_tp_domain(r), 1) or r.allow_tp_across_nodes]
    out: list[Candidate] = []
    reasons: list[str] = []
    for tp in tps:
        if n % tp:
            reasons.append(f"TP {tp} does not divide {n} GPUs")
            continue
        pps = [r.pp] if r.pp else divisors(n // tp)
        for pp in pps:
            if (n // tp) % pp:
                reasons.append(f"TP {tp} x PP {pp} does not divide {n} GPUs")
                continue
            cps = [r.cp] if r.cp else [c for c in divisors(n // (tp * pp)) if c & (c - 1) == 0 and c <= 32]
            for cp in cps:
                if r.dp:
                    dp = r.dp
                elif (n // (tp * pp)) % cp == 0:
                    dp = n // (tp * pp * cp)
                else:
                    reasons.append(f"TP {tp} x PP {pp} x CP {cp} does not divide {n} GPUs")
                    continue
                why = _layout_problem(r, tp, pp, dp, cp, explicit=r.pp is not None)
                if why:
                    reasons.append(why)
                    continue
                gbs = _global_batch(r, dp)
                mbs = gbs // (dp * r.micro_batch)
                for vpp in _vpp_options(r, pp, mbs):
                    if vpp > 1 and (pp == 1 or vpp > _stage_layers(r.model.layers, pp)):
                        reasons.append(
                            f"{vpp} virtual pipeline stages need PP > 1 and at least one layer per stage chunk"
                        )
                        continue
                    for rc in _recompute_options(r):
                        for zs in _zero_options(r):
                            lay = Layout(tp, pp, dp, cp, vpp, r.micro_batch, gbs, rc, zs)
                            mem = training_memory(r, lay)
                            out.append(Candidate(lay, mem, step_time(r, lay, mem)))
    return out, reasons if explicit else reasons[:1]


def _pick(cands: list[Candidate], request: TrainingRequest) -> Candidate | None:
    fitting = [c for c in cands if c.memory.fits]
    if not fitting:
        return None
    order = {lvl: i for i, lvl in enumerate(RECOMPUTE_LEVELS)}
    # fastest; on a tie the smaller model-parallel group, then the lighter recomputation
    return min(
        fitting,
        key=lambda c: (
            round(c.time.total_s, 9),
            c.layout.tp * c.layout.pp * c.layout.cp,
            order[c.layout.recompute],
            c.layout.zero_stage,
        ),
    )


def _memory_message(request: TrainingRequest, c: Candidate) -> str:
    mem, lay, m = c.memory, c.layout, request.model
    return (
        f"{m.title} with {lay.short()} ({lay.recompute} recomputation, ZeRO stage {lay.zero_stage}) "
        f"needs {gib(mem.total_bytes)} per GPU on the {mem.stage} pipeline stage "
        f"(weights {gib(mem.weights_bytes)}, gradients {gib(mem.gradients_bytes)}, optimizer "
        f"{gib(mem.optimizer_bytes)}, activations {gib(mem.activations_bytes)}, overhead "
        f"{gib(mem.overhead_bytes)}) but an {request.gpu.name} has {gib(mem.gpu_memory_bytes)}"
    )


def plan_training(request: TrainingRequest, keep_alternatives: int = 5) -> TrainingPlan:
    """Search (or check) the layout and estimate memory, time and the token budget.

    PlanError when nothing fits or the given layout does not divide.
    """
    r = request
    _validate_request(r)
    cands, reasons = candidates(r)
    if not cands:
        detail = "; ".join(dict.fromkeys(reasons)) or "no layout divides the GPUs"
        raise PlanError(f"no valid parallel layout for {r.model.title} on {r.gpus} GPUs: {detail}")
    chosen = _pick(cands, r)
    if chosen is None:
        smallest = min(cands, key=lambda c: c.memory.total_bytes)
        tips = []
        if r.recompute not in (None, "full"):
            tips.append("full recomputation")
        if r.tp is not None or r.pp is not None:
            tips.append("a larger TP or PP")
        if r.zero_stage is not None and sharding_stage(r) + 1 in FRAMEWORK_ZERO_STAGES[r.framework]:
            tips.append(f"ZeRO stage {sharding_stage(r) + 1}"
                        + (" (distributed_optimizer: true)" if r.framework == "megatron" else ""))
        tips.append("more GPUs")
        hint = "try " + ", ".join(tips)
        raise PlanError(f"{_memory_message(r, smallest)}; {hint}")
    lay = chosen.layout
    model_flops = model_flops_per_token(r.model, r.seq_len)
    hw_flops = hardware_flops_per_token(r.model, r.seq_len, lay.recompute)
    tokens_per_step = lay.global_batch * r.seq_len
    if r.mfu is not None:
        peak = r.gpu.dense_tflops(r.precision) * 1e12
        step, source = tokens_per_step * model_flops / (r.gpus * peak * r.mfu), "mfu"
    elif r.achieved_tflops is not None:
        step, source = tokens_per_step * hw_flops / (r.gpus * r.achieved_tflops * 1e12), "achieved_tflops"
    else:
        step, source = chosen.time.total_s, "estimate"

    warnings: list[str] = []
    if r.model.max_context and r.seq_len > r.model.max_context:
        warnings.append(f"sequence length {r.seq_len} exceeds {r.model.title}'s context of {r.model.max_context}")
    if r.model.layers % lay.pp:
        warnings.append(
            f"PP {lay.pp} does not divide {r.model.layers} layers: stages get up to "
            f"{_stage_layers(r.model.layers, lay.pp)} layers (set the first/last stage sizes, e.g. Megatron's "
            "--decoder-first-pipeline-num-layers)"
        )
    if lay.pp > 1 and lay.num_microbatches < lay.pp:
        warnings.append(
            f"{lay.num_microbatches} micro-batches for PP {lay.pp}: the pipeline never fills "
            f"(bubble {chosen.time.bubble_fraction:.0%})"
        )
    if r.model.is_moe:
        warnings.append("MoE experts are split by tensor parallelism; expert parallelism is not modelled")
    if lay.tp > r.gpus_per_node and lay.tp <= _tp_domain(r):
        warnings.append(
            f"TP {lay.tp} spans {lay.tp // r.gpus_per_node} nodes over the {_tp_domain(r)}-GPU NVLink domain: "
            "the job's nodes must be whole NVLink domains in node order (the aiinfra.io/nvlink-domain label), "
            "or its tensor parallelism runs over InfiniBand"
        )
    others = sorted((c for c in cands if c.memory.fits and c is not chosen), key=lambda c: c.time.total_s)
    return TrainingPlan(
        request=r, layout=lay, memory=chosen.memory, estimate=chosen.time, step_time_s=step,
        efficiency_source=source, model_flops_per_token=model_flops, hardware_flops_per_token=hw_flops,
        alternatives=tuple(others[:keep_alternatives]), warnings=tuple(warnings),
    )


def check_training(request: TrainingRequest) -> TrainingPlan:
    """Preflight: the plan, or PlanError when the layout does not divide or does not fit."""
    return plan_training(request, keep_alternatives=0)


# ---------------------------------------------------------------- blueprint mapping


def training_request_from_job(
    job: Any,
    gpu_name: str,
    gpus_per_node: int,
    custom_models: dict[str, Any] | None = None,
    *,
    site: Any = None,
    inter_node_link: str = DEFAULT_INTER_NODE_LINK,
    custom_gpus: dict[str, Any] | None = None,
) -> TrainingRequest:
    """Map a blueprint ``TrainingJob`` (aiinfra.spec.models) onto a request.

    The one request builder: the blueprint path (:func:`aiinfra.plan.cluster.plan_blueprint`) and
    ``aiinfra size train`` (which builds a ``TrainingJob`` from its flags) both call it, so both
    get the blueprint's defaults. ``gpu_name`` and ``gpus_per_node`` come from the job's node
    group's node type (``custom_gpus``: the blueprint's ``catalog.gpus``); ``site`` (a ``Site``) supplies the node overhead and PUE for the energy
    figure. KeyError for an unknown model or GPU name (with a suggestion); PlanError for sharding
    the framework cannot run (:func:`job_sharding_problem`).
    """
    why = job_sharding_problem(job)
    if why:
        raise PlanError(why)
    auto = lambda v: None if v == "auto" else v  # noqa: E731
    return TrainingRequest(
        model=resolve_model(job.model, custom_models),
        gpu=resolve_gpu(gpu_name, custom_gpus),
        gpus=job.nodes * gpus_per_node,
        gpus_per_node=gpus_per_node,
        tp=auto(job.tp), pp=auto(job.pp), dp=auto(job.dp), cp=auto(job.cp), vpp=auto(job.virtual_pipeline_stages),
        seq_len=job.seq_len, micro_batch=job.micro_batch,
        global_batch=job.global_batch, global_batch_tokens=job.global_batch_tokens,
        precision=job.precision, framework=job.framework, zero_stage=job.zero_stage, fsdp=job.fsdp,
        recompute=job.recompute, sequence_parallel=job.sequence_parallel,
        distributed_optimizer=job.distributed_optimizer, tokens=float(job.tokens), mfu=job.mfu,
        inter_node_link=inter_node_link,
        node_overhead_w=site.node_overhead_w if site is not None else DEFAULT_NODE_OVERHEAD_W,
        pue=site.pue if site is not None else DEFAULT_PUE,
        name=job.name,
    )


def with_overrides(request: TrainingRequest, **changes: Any) -> TrainingRequest:
    """A copy of ``request`` with some fields changed (dataclasses.replace)."""
    return replace(request, **changes)
