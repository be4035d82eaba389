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
- Step time: :mod:`aiinfra.plan.step_time` (GEMMs by shape, memory-bound kernels, collectives with
  their overlap windows), with every input printed and settable (``time_inputs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from aiinfra.catalog.defaults import DEFAULT_INTER_NODE_LINK, DEFAULT_NODE_OVERHEAD_W, DEFAULT_PUE
from aiinfra.catalog.formats import NF4_DOUBLE_QUANT_BITS  # QLoRA's frozen weights: the catalog's nf4
from aiinfra.catalog.gpus import GpuModel, resolve_gpu
from aiinfra.catalog.links import link_rate
from aiinfra.catalog.models import LlmArchitecture, resolve_model
from aiinfra.catalog.time_model import TIME_INPUTS, time_input_problem
from aiinfra.plan.common import DAY_S, GB, GIB, HOUR_S, PlanError, divisors, gib, require_positive
from aiinfra.plan.step_time import StepEstimate, StepSetup, estimate_step, input_sources, resolve_inputs

# ---------------------------------------------------------------- assumptions (documented, overridable)

#: Achievable fraction of a link's one-direction peak for NCCL collectives (the step-time input
#: ``link_efficiency``; the fabric acceptance test expects the same fraction).
LINK_EFFICIENCY = TIME_INPUTS["link_efficiency"].default
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
#: Megatron-LM release (versions.megatron_lm, whose arguments the plan was checked against:
#: core_v0.12.0): not offered. DeepSpeed: ``zero_optimization.stage`` 0-3.
FRAMEWORK_ZERO_STAGES: dict[str, tuple[int, ...]] = {"megatron": (0, 1), "deepspeed": (0, 1, 2, 3)}
#: Where DeepSpeed ZeRO offloads to (``zero_optimization.offload_optimizer/offload_param.device``).
OFFLOAD_DEVICES = ("none", "cpu", "nvme")
#: DeepSpeed's memory estimators multiply the host memory by this ``additional_buffer_factor``
#: (default 1.5 in estimate_zero2_model_states_mem_needs and estimate_zero3_model_states_mem_needs).
DEEPSPEED_HOST_BUFFER_FACTOR = 1.5
#: Fine-tuning methods: all weights trained, or frozen weights (16-bit; QLoRA: NF4) with LoRA
#: adapters of rank r on every linear layer of the transformer layers (Hu et al. 2021; Dettmers et
#: al. 2023, QLoRA, which puts adapters on all linear layers).
FINETUNE_METHODS = ("full", "lora", "qlora")
#: Optimizers: Adam with fp32 moments (8 bytes/parameter), or bitsandbytes' 8-bit Adam (one byte
#: per moment plus an fp32 absmax per block of ADAM_8BIT_BLOCK values: Dettmers et al. 2022,
#: "8-bit Optimizers via Block-wise Quantization", block size 2048).
OPTIMIZERS = ("adam", "adam-8bit")
ADAM_8BIT_BLOCK = 2048


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
    # DeepSpeed ZeRO offload (none | cpu | nvme): optimizer states from stage 1, parameters at stage 3
    offload_optimizer: str = "none"
    offload_param: str = "none"
    finetune: str = "full"  # full | lora | qlora (FINETUNE_METHODS)
    lora_rank: int = 16  # LoRA/QLoRA adapter rank, on every linear layer of the transformer layers
    optimizer: str = "adam"  # adam | adam-8bit (OPTIMIZERS)
    master_weights: bool = True  # False: trained in 16 bits, no fp32 master copy (QLoRA's bf16 adapters)
    tokens: float | None = None  # token budget
    mfu: float | None = None  # end-to-end MFU: the GEMM and attention efficiencies are solved to reach it
    achieved_tflops: float | None = None  # end-to-end hardware TFLOP/s per GPU (same, through the MFU)
    time_inputs: tuple[tuple[str, float], ...] = ()  # step-time inputs set by the user (catalog.time_model)
    fabric_sharp: bool = False  # the fabric offers InfiniBand SHARP (fabric.sharp)
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
    #: ZeRO-3: the largest layer gathered whole, 16-bit weights and gradients (DeepSpeed's estimator)
    gathered_bytes: float = 0.0
    #: the ZeRO paper's ideal model states (16-bit weights and gradients, K = 12), for comparison
    paper_model_states_bytes: float = 0.0
    offload_device: str = "none"
    #: states a node offloads (to CPU memory or NVMe), and the host memory DeepSpeed's estimator asks
    offload_bytes_per_node: float = 0.0
    host_bytes_per_node: float = 0.0
    trainable_params_per_gpu: int | None = None  # LoRA / QLoRA: the adapters (None: every parameter)

    @property
    def model_states_bytes(self) -> float:
        return self.weights_bytes + self.gradients_bytes + self.optimizer_bytes + self.gathered_bytes

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
            "gathered_layer_bytes": round(self.gathered_bytes),
            "model_states_bytes": round(self.model_states_bytes),
            "paper_model_states_bytes": round(self.paper_model_states_bytes),
            "offload_device": self.offload_device,
            "offload_bytes_per_node": round(self.offload_bytes_per_node),
            "host_bytes_per_node": round(self.host_bytes_per_node),
            "trainable_params_per_gpu": self.trainable_params_per_gpu,
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
    optimizer_s: float = 0.0
    detail: StepEstimate | None = None
    inputs: tuple[tuple[str, float], ...] = ()  # every step-time input as used

    @property
    def total_s(self) -> float:
        return (self.compute_s + self.bubble_s + self.tp_comm_s + self.cp_comm_s + self.pp_comm_s + self.dp_comm_s
                + self.optimizer_s)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "compute_s": self.compute_s,
            "bubble_s": self.bubble_s,
            "bubble_fraction": self.bubble_fraction,
            "tp_comm_exposed_s": self.tp_comm_s,
            "cp_comm_exposed_s": self.cp_comm_s,
            "pp_comm_exposed_s": self.pp_comm_s,
            "dp_comm_exposed_s": self.dp_comm_s,
            "optimizer_s": self.optimizer_s,
            "estimated_step_time_s": self.total_s,
        }
        d = self.detail
        if d is not None:
            out.update({
                "gemm_s": d.gemm_s, "attention_s": d.attention_s, "memory_bound_s": d.memory_bound_s,
                "recompute_s": d.recompute_s, "stage_microbatch_s": d.stage_microbatch_s,
                "collectives": [c.to_dict() for c in d.collectives],
            })
        return out


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
    def model_flops_6nd_per_token(self) -> float:
        """6 N: the papers' compute-budget convention (N = parameters, active ones for MoE), beside the
        attention-inclusive :attr:`model_flops_per_token` the MFU uses."""
        return 6.0 * self.request.model.active_params

    def time_inputs_dict(self) -> dict[str, dict[str, Any]]:
        """Each step-time input: the value used and where it comes from (set, fitted, assumed, or
        solved from the MFU / achieved TFLOP/s given)."""
        sources = input_sources(dict(self.request.time_inputs))
        solved = self.efficiency_source != "estimate"
        return {
            name: {"value": value,
                   "source": "from " + self.efficiency_source if solved and name in MFU_SOLVED_INPUTS
                   else sources[name]}
            for name, value in self.estimate.inputs
        }

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
            "model_flops_6nd_per_token": self.model_flops_6nd_per_token,
            "step": self.estimate.to_dict(),
            "step_time_s": self.step_time_s,
            "efficiency_source": self.efficiency_source,
            "time_inputs": self.time_inputs_dict(),
            "tokens_per_s": self.tokens_per_s,
            "tokens_per_s_per_gpu": self.tokens_per_s / r.gpus,
            "mfu": self.mfu,
            "model_tflops": self.model_tflops,
            "achieved_tflops": self.achieved_tflops,
            "tokens": r.tokens,
            "compute_budget_flops": None if r.tokens is None else {
                "6nd": self.model_flops_6nd_per_token * r.tokens,
                "with_attention": self.model_flops_per_token * r.tokens,
            },
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


@dataclass(frozen=True)
class ModelStates:
    """Per-GPU model-state bytes of one pipeline stage, and what its node offloads."""

    weights: float
    gradients: float
    optimizer: float
    gathered: float = 0.0  # ZeRO-3: the largest layer gathered whole
    offload_bytes_per_node: float = 0.0
    host_bytes_per_node: float = 0.0


def deepspeed_model_states(
    params: float,
    shards: int,
    stage: int,
    largest_layer_params: float,
    gpus_per_node: int,
    offload_optimizer: str = "none",
    offload_param: str = "none",
    moment_bytes: float = 8.0,
) -> ModelStates:
    """DeepSpeed ZeRO as implemented, per GPU: 16-bit weights, mixed-precision Adam.

    DeepSpeed's own estimators (deepspeed/runtime/zero/stage_1_and_2.py
    ``estimate_zero2_model_states_mem_needs`` at commit 02aa38c3; deepspeed/runtime/zero/stage3.py
    ``estimate_zero3_model_states_mem_needs`` at commit 007cca6a), ``P`` parameters over ``N`` ranks:

    - ZeRO-2: the 16-bit weights whole (2P) + 18P/N partitioned: 16-bit gradients 2, fp32 gradients
      4, fp32 master weights 4, Adam moments 8. Optimizer offloaded: 2P on the GPU; the host holds
      P x max(4 N, 16) x 1.5 per node (no offload: P x 4 x GPUs per node x 1.5).
    - ZeRO-3: 18P/N + 4L, L the largest layer (module) gathered whole with its 16-bit gradients.
      Optimizer offloaded: 4L + 2P/N (the 16-bit weight partition); parameters too: 4L. Host per
      node (zero.Init): 16 and 18 bytes x P x GPUs per node / N x 1.5; no offload: 4L x GPUs x 1.5.
    - ZeRO-1 and 0 have no estimator: the same buffers with the 16-bit gradients whole (stage 1:
      2P + 2P + 16P/N; stage 0: 20P); the optimizer offloaded at stage 1 leaves 4P on the GPU.

    ``moment_bytes``: Adam's two moments per parameter (8-bit Adam: about 2). ``offload_*``: none,
    cpu or nvme (the GPU side is the same; on NVMe the offloaded states leave host memory).
    """
    if stage not in (0, 1, 2, 3):
        raise PlanError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage}")
    if offload_param != "none" and (stage != 3 or offload_optimizer == "none"):
        raise PlanError("DeepSpeed offloads parameters at ZeRO stage 3 with the optimizer offloaded too "
                        "(offload_param needs offload_optimizer and stage 3)")
    if offload_optimizer != "none" and stage == 0:
        raise PlanError("DeepSpeed offloads the optimizer from ZeRO stage 1: set a ZeRO stage or no offload")
    p, n = params, shards if stage >= 1 else 1
    master = 4 + moment_bytes  # fp32 master weights and the moments, partitioned from stage 1
    fp32_grads = 4.0
    gathered = 4 * largest_layer_params if stage == 3 else 0.0
    if stage <= 1:
        w, g, o = 2 * p, 2 * p + fp32_grads * p / n, master * p / n
    elif stage == 2:
        w, g, o = 2 * p, (2 + fp32_grads) * p / n, master * p / n
    else:  # the estimator's 18P/N: 16-bit weights 2, fp32 gradients 4, master and moments 12
        w, g, o = 2 * p / n, fp32_grads * p / n, master * p / n
    host_buffers = DEEPSPEED_HOST_BUFFER_FACTOR
    host = (4 * largest_layer_params if stage == 3 else 4 * p) * gpus_per_node * host_buffers
    if offload_optimizer == "none":
        return ModelStates(w, g, o, gathered, 0.0, host)
    if stage == 3 and offload_param != "none":
        moved = w + g + o
        w, g, o = 0.0, 0.0, 0.0
        cpu_host = moved * gpus_per_node * host_buffers
    elif stage == 3:
        moved = g + o
        g, o = 0.0, 0.0
        cpu_host = moved * gpus_per_node * host_buffers
    elif stage == 2:
        moved = g + o
        g, o = 0.0, 0.0
        cpu_host = p * max(4 * shards, 16) * host_buffers
    else:  # stage 1: the fp32 gradient partition and the optimizer leave; the 16-bit gradients stay whole
        moved = fp32_grads * p / n + o
        g, o = 2 * p, 0.0
        cpu_host = p * max(4 * shards, 16) * host_buffers
    offloaded = moved * gpus_per_node
    if offload_optimizer == "nvme":
        return ModelStates(w, g, o, gathered, offloaded, host)
    return ModelStates(w, g, o, gathered, offloaded, cpu_host)


def optimizer_moment_bytes(optimizer: str) -> float:
    """Bytes per parameter of Adam's two moments: fp32 (8), or bitsandbytes 8-bit (one byte each
    and an fp32 absmax per block of ADAM_8BIT_BLOCK values)."""
    if optimizer == "adam-8bit":
        return 2 * (1 + 4 / ADAM_8BIT_BLOCK)
    return 8.0


def lora_params_per_layer(model: LlmArchitecture, rank: int) -> int:
    """LoRA adapter parameters of one transformer layer, adapters on every linear layer:
    r x (in + out) per matrix (A: r x in, B: out x r), each expert its own."""
    return sum(rank * (n_in + n_out) * copies for _, n_in, n_out, copies in model.linear_shapes())


def quantized_layer_bytes(model: LlmArchitecture, bits: float) -> float:
    """One transformer layer with its linear weights at ``bits`` per weight (scales included in
    ``bits``) and the rest (norms, biases, router) in 16 bits."""
    linear = sum(n_in * n_out * copies for _, n_in, n_out, copies in model.linear_shapes())
    return linear * bits / 8 + (model.layer_params - linear) * 2


def largest_module_params(model: LlmArchitecture, tp: int, first: bool, last: bool) -> float:
    """Parameters of the largest module a pipeline stage holds (what ZeRO-3 gathers whole): a
    linear layer, or the embedding on the first stage and the output projection on the last."""
    largest = max(n_in * n_out for _, n_in, n_out, _ in model.linear_shapes())
    if first or last:
        largest = max(largest, model.vocab * model.hidden)
    return largest / tp


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
        largest = largest_module_params(m, tp, i == 0, i == pp - 1)
        states, paper, trainable = _stage_model_states(request, params, n_layers, tp, shards, stage, largest)
        mem = TrainingMemory(
            name, round(params), states.weights, states.gradients, states.optimizer, acts, RUNTIME_OVERHEAD_BYTES,
            request.gpu.memory_bytes, states.gathered, paper,
            request.offload_optimizer if (request.framework == "deepspeed" and stage >= 1) else "none",
            states.offload_bytes_per_node, states.host_bytes_per_node, trainable,
        )
        if best is None or mem.total_bytes > best.total_bytes:
            best = mem
    assert best is not None
    return best


def _stage_model_states(
    request: TrainingRequest, params: float, n_layers: int, tp: int, shards: int, stage: int, largest: float
) -> tuple[ModelStates, float, int | None]:
    """(model states as the framework holds them, the ZeRO paper's ideal, trainable parameters or
    None when all are) of a stage with ``params`` parameters per GPU before data-parallel sharding.

    Megatron: 16-bit weights, fp32 gradients, fp32 master and moments (:func:`model_state_bytes`).
    DeepSpeed: :func:`deepspeed_model_states`. Without master weights: 16-bit weights and gradients
    and the optimizer's moments, sharded as the ZeRO paper shards them. LoRA / QLoRA: the weights frozen (16-bit; QLoRA: the
    transformer layers' linear weights in NF4 with double quantization, the rest 16-bit, as
    bitsandbytes stores them), the adapters trained with the framework's model states; ZeRO-3
    gathers the largest frozen module's weights only.
    """
    r, m = request, request.model
    moments = optimizer_moment_bytes(r.optimizer)
    trainable: int | None = None
    frozen = 0.0
    if r.finetune in ("lora", "qlora"):
        trainable = round(n_layers * lora_params_per_layer(m, r.lora_rank) / tp)
        if r.finetune == "qlora":
            layer_bytes = quantized_layer_bytes(m, NF4_DOUBLE_QUANT_BITS)
            frozen = n_layers * layer_bytes / tp + (params - n_layers * m.layer_params / tp) * 2
        else:
            frozen = params * 2
    states_of = trainable if trainable is not None else params
    if not r.master_weights:  # 16-bit weights and gradients, the moments: the ZeRO paper's sharding
        w, g, o = model_state_bytes(states_of, shards, stage, 2, 2, moments)
        states = ModelStates(w, g, o, 4 * largest if (r.framework == "deepspeed" and stage == 3) else 0.0)
    elif r.framework == "deepspeed":
        states = deepspeed_model_states(
            states_of, shards, stage, largest, r.gpus_per_node,
            r.offload_optimizer if stage >= 1 else "none", r.offload_param if stage == 3 else "none", moments,
        )
    else:
        w_b, g_b, _ = bytes_per_param(r)
        w, g, o = model_state_bytes(states_of, shards, stage, w_b, g_b, 4 + moments)
        states = ModelStates(w, g, o)
    pw, pg, po = model_state_bytes(states_of, shards, stage, 2, 2, 12)
    paper = pw + pg + po
    if trainable is not None:  # frozen weights: held (sharded at ZeRO-3), neither gradients nor optimizer
        share = shards if stage >= 3 else 1
        gathered = 0.0
        if r.framework == "deepspeed" and stage == 3:
            gathered = largest * (NF4_DOUBLE_QUANT_BITS / 8 if r.finetune == "qlora" else 2)
        states = replace(states, weights=states.weights + frozen / share, gathered=gathered)
        paper += frozen / share
    return states, paper, trainable


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


def time_inputs(request: TrainingRequest, **scaled: float) -> dict[str, float]:
    """Every step-time input as the estimate uses it: the request's settings over the defaults
    (:data:`aiinfra.catalog.time_model.TIME_INPUTS`); ``scaled`` replaces some (the MFU solve)."""
    values = resolve_inputs(dict(request.time_inputs), request.framework, request.fabric_sharp)
    values.update(scaled)
    return values


def step_setup(request: TrainingRequest, layout: Layout, memory: TrainingMemory | None = None) -> StepSetup:
    """The request and layout as the step-time model sees them (:class:`aiinfra.plan.step_time.StepSetup`)."""
    r, lay = request, layout
    mem = memory or training_memory(r, lay)
    _, g_b, _ = bytes_per_param(r)
    return StepSetup(
        model=r.model, gpu=r.gpu, precision=r.precision, seq_len=r.seq_len, tp=lay.tp, pp=lay.pp, dp=lay.dp,
        cp=lay.cp, vpp=lay.vpp, micro_batch=lay.micro_batch, num_microbatches=lay.num_microbatches,
        recompute=lay.recompute, sequence_parallel=r.sequence_parallel and lay.tp > 1,
        flash_attention=r.flash_attention, zero_stage=lay.zero_stage,
        stage_layers=tuple(stage_layer_counts(r.model.layers, lay.pp)), params_per_gpu=mem.params_per_gpu,
        grad_bytes=g_b, nvlink_gpus=_tp_domain(r), gpus_per_node=r.gpus_per_node,
        ib_rail_b_s=link_rate(r.inter_node_link).gbytes_per_s * GB, ib_name=link_rate(r.inter_node_link).name,
    )


def step_time(request: TrainingRequest, layout: Layout, memory: TrainingMemory | None = None,
              inputs: dict[str, float] | None = None) -> StepTime:
    """The step-time estimate of a layout (:func:`aiinfra.plan.step_time.estimate_step`)."""
    values = inputs if inputs is not None else time_inputs(request)
    est = estimate_step(step_setup(request, layout, memory), values)
    return StepTime(
        compute_s=est.compute_s, bubble_s=est.bubble_s,
        bubble_fraction=pipeline_bubble_fraction(layout.pp, layout.num_microbatches, layout.vpp),
        tp_comm_s=est.tp_exposed_s, cp_comm_s=est.cp_exposed_s, pp_comm_s=est.pp_exposed_s,
        dp_comm_s=est.dp_exposed_s, optimizer_s=est.optimizer_s, detail=est, inputs=tuple(values.items()),
    )


#: The inputs an MFU (or achieved TFLOP/s) given by the user replaces: the compute efficiencies.
MFU_SOLVED_INPUTS = ("gemm_efficiency_bf16", "gemm_efficiency_fp8", "attention_efficiency")


def solve_for_mfu(request: TrainingRequest, layout: Layout, memory: TrainingMemory, target_mfu: float,
                  model_flops: float) -> tuple[StepTime, bool]:
    """The estimate with the compute efficiencies scaled (one factor, each capped at 1) so that the
    end-to-end MFU is ``target_mfu``; communication, bubble and memory-bound kernels stay modelled.
    Returns (estimate, reached): not reached when even full efficiency is slower than the target."""
    base = time_inputs(request)
    peak = request.gpu.dense_tflops(request.precision) * 1e12
    tokens = layout.global_batch * request.seq_len

    def at(k: float) -> StepTime:
        return step_time(request, layout, memory, time_inputs(
            request, **{n: min(1.0, base[n] * k) for n in MFU_SOLVED_INPUTS}))

    def mfu_of(st: StepTime) -> float:
        return tokens * model_flops / (st.total_s * request.gpus * peak)

    lo, hi = 1e-3, 1.0 / min(base[n] for n in MFU_SOLVED_INPUTS)
    top = at(hi)
    if mfu_of(top) < target_mfu:
        return top, False
    for _ in range(60):
        mid = (lo + hi) / 2
        if mfu_of(at(mid)) < target_mfu:
            lo = mid
        else:
            hi = mid
    return at(hi), True


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
    for name, value in r.time_inputs:
        why = time_input_problem(name, value)
        if why:
            raise PlanError(why)
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
    for what, device in (("optimizer", r.offload_optimizer), ("parameter", r.offload_param)):
        if device not in OFFLOAD_DEVICES:
            raise PlanError(f"{what} offload must be one of {', '.join(OFFLOAD_DEVICES)}, got '{device}'")
        if device != "none" and r.framework != "deepspeed":
            raise PlanError(f"{what} offload is a DeepSpeed ZeRO option: set framework deepspeed or no offload")
    if r.offload_param != "none" and r.offload_optimizer == "none":
        raise PlanError("DeepSpeed offloads parameters (ZeRO stage 3) together with the optimizer: "
                        "offload the optimizer too")
    if r.finetune not in FINETUNE_METHODS:
        raise PlanError(f"fine-tuning must be one of {', '.join(FINETUNE_METHODS)}, got '{r.finetune}'")
    if r.optimizer not in OPTIMIZERS:
        raise PlanError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got '{r.optimizer}'")
    if r.finetune != "full" and r.lora_rank < 1:
        raise PlanError(f"LoRA rank must be a positive integer, got {r.lora_rank}")
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
        f"{gib(mem.optimizer_bytes)}, "
        + (f"gathered layer {gib(mem.gathered_bytes)}, " if mem.gathered_bytes else "")
        + f"activations {gib(mem.activations_bytes)}, overhead "
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
        if r.framework == "deepspeed" and r.offload_optimizer == "none":
            tips.append("offload: cpu (DeepSpeed ZeRO offload)")
        tips.append("more GPUs")
        hint = "try " + ", ".join(tips)
        raise PlanError(f"{_memory_message(r, smallest)}; {hint}")
    lay = chosen.layout
    model_flops = model_flops_per_token(r.model, r.seq_len)
    hw_flops = hardware_flops_per_token(r.model, r.seq_len, lay.recompute)
    tokens_per_step = lay.global_batch * r.seq_len
    warnings: list[str] = []
    estimate = chosen.time
    source = "estimate"
    target: float | None = None
    peak = r.gpu.dense_tflops(r.precision) * 1e12
    if r.mfu is not None:
        target, source = r.mfu, "mfu"
    elif r.achieved_tflops is not None:
        target, source = r.achieved_tflops * 1e12 * model_flops / hw_flops / peak, "achieved_tflops"
    if target is not None:
        estimate, reached = solve_for_mfu(r, lay, chosen.memory, target, model_flops)
        if not reached:
            got = tokens_per_step * model_flops / (estimate.total_s * r.gpus * peak)
            warnings.append(
                f"the {source.replace('_', ' ')} given ({target:.1%} MFU) is out of reach of this layout: with the "
                f"GEMMs at full efficiency, the modelled communication, bubble and memory-bound kernels give "
                f"{got:.1%}; the plan uses that"
            )
    step = estimate.total_s
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
        request=r, layout=lay, memory=chosen.memory, estimate=estimate, step_time_s=step,
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
    fabric_sharp: bool = False,
) -> TrainingRequest:
    """Map a blueprint ``TrainingJob`` (aiinfra.spec.models) onto a request.

    The one request builder: the blueprint path (:func:`aiinfra.plan.cluster.plan_blueprint`) and
    ``aiinfra size train`` (which builds a ``TrainingJob`` from its flags) both call it, so both
    get the blueprint's defaults. ``gpu_name`` and ``gpus_per_node`` come from the job's node
    group's node type (``custom_gpus``: the blueprint's ``catalog.gpus``); ``fabric_sharp``: the
    fabric's ``sharp`` (InfiniBand SHARP for the step time); ``site`` (a ``Site``) supplies the node overhead and PUE for the energy
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
        time_inputs=tuple(sorted((getattr(job, "planner", None) or {}).items())), fabric_sharp=fabric_sharp,
        # rendered at stage >= 1 and at stage 3; a Megatron job's offload is the check's problem
        # (train-offload-needs-deepspeed), not a second one from the planner
        offload_optimizer=job.offload if job.framework == "deepspeed" else "none",
        offload_param=job.offload if job.framework == "deepspeed" else "none",
        inter_node_link=inter_node_link,
        node_overhead_w=site.node_overhead_w if site is not None else DEFAULT_NODE_OVERHEAD_W,
        pue=site.pue if site is not None else DEFAULT_PUE,
        name=job.name,
    )


def with_overrides(request: TrainingRequest, **changes: Any) -> TrainingRequest:
    """A copy of ``request`` with some fields changed (dataclasses.replace)."""
    return replace(request, **changes)
