"""Training step time from the work each GPU does: GEMMs by shape, memory-bound kernels, collectives.

One GPU of the slowest pipeline stage, one micro-batch through one transformer layer:

- **GEMMs** by their shapes on that GPU (after the tensor-parallel split): M = tokens of the
  micro-batch (sequence / CP x micro-batch), K and N the layer widths / TP. A GEMM of F FLOPs takes
  ``(F / (peak x waves) + knee) / efficiency``, ``waves`` the busy fraction of the SMs over its
  128 x 128 output tiles (the last wave partly empty) (``gemm_knee_s``: the fixed cost that makes small GEMMs slow;
  ``gemm_efficiency_bf16`` or ``_fp8``: the large-GEMM fraction of the precision's dense peak), or
  its bytes at HBM bandwidth when that is longer. FP8 speeds up these GEMMs only. Backward: the
  input-gradient and weight-gradient GEMMs, each with its own shape.
- **Attention core**: fused (flash) attention at ``attention_efficiency`` of the BF16 peak on the
  causal FLOPs (backward 2.5 x forward); without flash attention, the QK^T and AV batched GEMMs
  (K = head_dim) and the softmax / dropout over the s^2 scores at HBM bandwidth.
- **Memory-bound kernels** at ``hbm_efficiency`` x HBM bandwidth: norms, residual adds, dropout,
  the MLP activation, rotary embedding, FP8 casts, the cross-entropy over the logits; the
  backward moves twice the forward's bytes. With sequence parallelism the norms and residuals
  run on 1/TP of the tokens.
- **Recomputation**: full repeats the layer's forward (GEMMs, kernels, TP collectives); selective
  repeats the attention core (memory-bound without flash attention).
- **Collectives**, per call: NCCL ring time ``(n - 1)/n x bytes / bus bandwidth`` for all-gather and
  reduce-scatter, twice that for all-reduce; InfiniBand SHARP all-reduce moves the bytes once; NVLS
  (in-switch all-reduce, GPUs with ``nvls``) reduces ``bytes / (nvls_efficiency x NVLink line rate)``
  (its nccl-tests algbw; 8 H100: ~275 GB/s, busbw ~480 GB/s), taken where it beats the ring (as
  NCCL's tuner picks; the ring wins at 2 ranks). Bus bandwidth = ``link_efficiency`` x the link's
  one-direction rate: NVLink inside the NVLink domain; across nodes one InfiniBand rail per GPU,
  times the group's GPUs per node (NCCL drives every rail of the node). Each call's exposed time is
  ``max(0, time - overlap x window)``: the window is the compute it can hide behind (the weight-
  gradient GEMM for a tensor-parallel input-gradient reduce; the adjacent GEMM with
  ``tp_comm_overlap``; the attention blocks for ring attention; a micro-batch's stage compute for
  pipeline sends after the fill; the last backward / first forward for data-parallel gradients and
  parameters with ``dp_overlap``; each micro-batch's pass under ZeRO-3).
- **Step** = micro-batches x stage time + bubble (p - 1)/v x stage time + exposed pipeline and
  data-parallel communication + the optimizer step (30 bytes per local parameter at HBM bandwidth).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiinfra.catalog.gpus import GpuModel
from aiinfra.catalog.models import LlmArchitecture
from aiinfra.catalog.time_model import TIME_INPUTS

#: Bytes the optimizer step moves per local parameter (Adam, mixed precision): read the fp32
#: gradient (4), read and write the fp32 master weight, momentum and variance (24), write the
#: 16-bit weight (2).
OPTIMIZER_BYTES_PER_PARAM = 30
#: Flash attention's backward does 2.5 x the forward FLOPs (dQ, dK, dV and the recomputed scores).
FLASH_BACKWARD_FACTOR = 2.5


@dataclass(frozen=True)
class StepSetup:
    """What the step-time model needs of a request and its layout (built by plan.training)."""

    model: LlmArchitecture
    gpu: GpuModel
    precision: str
    seq_len: int
    tp: int
    pp: int
    dp: int
    cp: int
    vpp: int
    micro_batch: int
    num_microbatches: int
    recompute: str
    sequence_parallel: bool
    flash_attention: bool
    zero_stage: int
    stage_layers: tuple[int, ...]
    params_per_gpu: float  # parameters of the heaviest stage on one GPU (before ZeRO sharding)
    grad_bytes: float  # bytes per gradient as reduced (Megatron fp32 main grads 4, DeepSpeed 2)
    nvlink_gpus: int  # GPUs a rank reaches over NVLink
    gpus_per_node: int
    ib_rail_b_s: float  # one compute rail, one direction, bytes/s
    ib_name: str


@dataclass(frozen=True)
class Collective:
    """One kind of collective of a step, summed over its calls (times per step, one GPU)."""

    name: str
    group: str  # tp | cp | pp | dp
    op: str  # all_gather | reduce_scatter | all_reduce | send_recv
    ranks: int
    bytes: float  # one call, the whole tensor
    calls: int
    algorithm: str  # ring | nvls | sharp | p2p
    link: str
    bus_bandwidth_b_s: float
    time_s: float
    window_s: float
    exposed_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "group": self.group, "op": self.op, "ranks": self.ranks,
            "bytes_per_call": round(self.bytes), "calls": self.calls, "algorithm": self.algorithm,
            "link": self.link, "bus_bandwidth_b_s": self.bus_bandwidth_b_s, "time_s": self.time_s,
            "overlap_window_s": self.window_s, "exposed_s": self.exposed_s,
        }


@dataclass(frozen=True)
class StepEstimate:
    """Seconds per step for one GPU of the slowest stage."""

    stage_microbatch_s: float  # one micro-batch through the slowest stage (forward + backward)
    gemm_s: float  # per step
    attention_s: float
    memory_bound_s: float
    recompute_s: float
    tp_exposed_s: float
    cp_exposed_s: float
    bubble_s: float
    pp_exposed_s: float
    dp_exposed_s: float
    optimizer_s: float
    layer_s: float = 0.0  # one layer, one micro-batch, forward + backward with its exposed TP / CP communication
    collectives: tuple[Collective, ...] = field(default=())

    @property
    def compute_s(self) -> float:
        return self.gemm_s + self.attention_s + self.memory_bound_s + self.recompute_s

    @property
    def total_s(self) -> float:
        return (self.compute_s + self.tp_exposed_s + self.cp_exposed_s + self.bubble_s + self.pp_exposed_s
                + self.dp_exposed_s + self.optimizer_s)


# ---------------------------------------------------------------- inputs


def resolve_inputs(overrides: Mapping[str, float], framework: str, fabric_sharp: bool = False) -> dict[str, float]:
    """Every input's value: the override, else the default; the -1 'auto' switches from the job."""
    values = {name: float(overrides.get(name, spec.default)) for name, spec in TIME_INPUTS.items()}
    if values["dp_overlap"] < 0:
        values["dp_overlap"] = 1.0 if framework == "deepspeed" else 0.0
    if values["ib_sharp"] < 0:
        values["ib_sharp"] = 1.0 if fabric_sharp else 0.0
    return values


def input_sources(overrides: Mapping[str, float]) -> dict[str, str]:
    """Where each input's value comes from: set, fitted (calibration) or assumed (a stated default)."""
    return {name: "set" if name in overrides else ("fitted" if spec.fitted else "assumed")
            for name, spec in TIME_INPUTS.items()}


# ---------------------------------------------------------------- kernels


def _peak(gpu: GpuModel, precision: str) -> float:
    return gpu.dense_tflops(precision) * 1e12


def _hbm(gpu: GpuModel, inp: Mapping[str, float]) -> float:
    return gpu.hbm_bandwidth_gb_s * 1e9 * inp["hbm_efficiency"]


#: Output tile of one thread block of a tensor-core GEMM (rows x columns), for wave quantization.
GEMM_TILE = (128, 128)


def wave_utilisation(m: float, n: float, gpu: GpuModel, copies: float = 1) -> float:
    """Fraction of the SMs busy over a GEMM's waves: output tiles / (waves x SMs), the last wave
    partly empty (1 when the GPU's SM count is unknown)."""
    if gpu.sm_count <= 0:
        return 1.0
    tiles = math.ceil(m / GEMM_TILE[0]) * math.ceil(n / GEMM_TILE[1]) * max(1, round(copies))
    waves = math.ceil(tiles / gpu.sm_count)
    return tiles / (waves * gpu.sm_count)


def gemm_s(m: float, n: float, k: float, precision: str, gpu: GpuModel, inp: Mapping[str, float],
           copies: float = 1) -> float:
    """One (m x k) @ (k x n) GEMM, ``copies`` times: the longer of compute and HBM traffic."""
    fp8 = precision == "fp8"
    eff = inp["gemm_efficiency_fp8" if fp8 else "gemm_efficiency_bf16"]
    flops = 2 * m * n * k * copies
    compute = (flops / (_peak(gpu, precision) * wave_utilisation(m, n, gpu, copies)) + inp["gemm_knee_s"] * copies) / eff
    in_bytes = 1 if fp8 else 2
    traffic = ((m * k + k * n) * in_bytes + m * n * 2) * copies / _hbm(gpu, inp)
    return max(compute, traffic)


@dataclass(frozen=True)
class _Layer:
    """One layer, one micro-batch, one GPU (seconds)."""

    gemm_fwd: float
    gemm_dgrad: float
    gemm_wgrad: float
    attn_fwd: float
    attn_bwd: float
    mem_fwd: float
    mem_bwd: float
    recompute: float
    # per-GEMM pieces the TP windows use
    wgrad_in: tuple[float, float]  # weight-gradient GEMMs of QKV and MLP-in (hide the input-grad reduce)
    dgrad_in: tuple[float, float]
    fwd_pairs: tuple[float, float, float, float]  # qkv, proj, mlp_in, mlp_out forward

    @property
    def fwd(self) -> float:
        return self.gemm_fwd + self.attn_fwd + self.mem_fwd

    @property
    def bwd(self) -> float:
        return self.gemm_dgrad + self.gemm_wgrad + self.attn_bwd + self.mem_bwd + self.recompute


def _layer(s: StepSetup, inp: Mapping[str, float]) -> _Layer:
    m, g, t = s.model, s.gpu, s.tp
    prec = s.precision
    s_loc = s.seq_len / s.cp
    tokens = s_loc * s.micro_batch
    e = m.experts_per_token
    f_in = (2 if m.gated_mlp else 1) * m.ffn_hidden
    shapes = [  # (K, N, copies)
        (m.hidden, (m.q_dim + 2 * m.kv_dim) / t, 1),
        (m.q_dim / t, m.hidden, 1),
        (m.hidden, f_in / t, e),
        (m.ffn_hidden / t, m.hidden, e),
    ]
    fwd = [gemm_s(tokens, n, k, prec, g, inp, c) for k, n, c in shapes]
    dgrad = [gemm_s(tokens, k, n, prec, g, inp, c) for k, n, c in shapes]
    wgrad = [gemm_s(k, n, tokens, prec, g, inp, c) for k, n, c in shapes]
    if m.is_moe:  # router: tokens x hidden x experts, small
        fwd.append(gemm_s(tokens, m.experts, m.hidden, "bf16", g, inp))

    hbm = _hbm(g, inp)
    heads = m.heads / t
    if s.flash_attention:
        flops = 4 * s_loc * s.seq_len * (m.q_dim / t) * s.micro_batch * 0.5  # causal
        attn_fwd = flops / (_peak(g, "bf16") * inp["attention_efficiency"])
        attn_bwd = FLASH_BACKWARD_FACTOR * attn_fwd
        attn_recompute = attn_fwd
    else:
        copies = heads * s.micro_batch
        hd = m.head_dim
        qk = gemm_s(s_loc, s.seq_len, hd, "bf16", g, inp, copies)
        av = gemm_s(s_loc, hd, s.seq_len, "bf16", g, inp, copies)
        scores = heads * s_loc * s.seq_len * s.micro_batch
        soft_fwd = (4 + (5 if m.dropout else 0)) * scores / hbm
        soft_bwd = (6 + (5 if m.dropout else 0)) * scores / hbm
        attn_fwd = qk + av + soft_fwd
        attn_bwd = 2 * (qk + av) + soft_bwd
        attn_recompute = attn_fwd

    rep = tokens / (t if (s.sequence_parallel and t > 1) else 1)  # tokens of the replicated region
    h = m.hidden
    mem = rep * h * (8 + 12 + (6 if m.dropout else 0))  # 2 norms, 2 residual adds, dropout masks
    mem += tokens * e * m.ffn_hidden / t * (6 if m.gated_mlp else 4)  # SwiGLU / GeLU
    if not m.learned_positions:
        mem += tokens * 4 * (m.q_dim + m.kv_dim) / t  # rotary on Q and K
    if prec == "fp8":  # cast each GEMM input to FP8: read 2 bytes, write 1
        mem += tokens * 3 * (2 * h + m.q_dim / t + e * m.ffn_hidden / t)
    mem_fwd = mem / hbm
    mem_bwd = 2 * mem_fwd

    if s.recompute == "full":
        recompute = sum(fwd) + attn_fwd + mem_fwd
    elif s.recompute == "selective":
        recompute = attn_recompute
    else:
        recompute = 0.0
    return _Layer(
        gemm_fwd=sum(fwd), gemm_dgrad=sum(dgrad), gemm_wgrad=sum(wgrad), attn_fwd=attn_fwd, attn_bwd=attn_bwd,
        mem_fwd=mem_fwd, mem_bwd=mem_bwd, recompute=recompute,
        wgrad_in=(wgrad[0], wgrad[2]), dgrad_in=(dgrad[0], dgrad[2]), fwd_pairs=(fwd[0], fwd[1], fwd[2], fwd[3]),
    )


def _logits(s: StepSetup, inp: Mapping[str, float]) -> tuple[float, float]:
    """Output layer on the last stage, one micro-batch: (forward, backward) seconds."""
    m, g = s.model, s.gpu
    tokens = s.seq_len / s.cp * s.micro_batch
    v = m.vocab / s.tp
    fwd = gemm_s(tokens, v, m.hidden, s.precision, g, inp)
    bwd = gemm_s(tokens, m.hidden, v, s.precision, g, inp) + gemm_s(m.hidden, v, tokens, s.precision, g, inp)
    ce = tokens * v * 4 * 3 / _hbm(g, inp)  # fp32 logits: softmax, loss, gradient
    return fwd + ce, bwd + ce


# ---------------------------------------------------------------- collectives


@dataclass(frozen=True)
class _Link:
    name: str
    bus_b_s: float
    nvls_b_s: float = 0.0  # NVLS all-reduce algorithm bandwidth, bytes/s (0: no NVLS)


def _group_link(s: StepSetup, inp: Mapping[str, float], span: int, ranks: int) -> _Link:
    """The link a group of ``ranks`` ranks uses whose members lie ``span`` ranks apart at most in
    the [TP, CP, DP, PP] order: NVLink when the whole span stays in the NVLink domain, else the
    InfiniBand rails (one per GPU; NCCL uses every rail of the node the group's ranks sit on)."""
    eff = inp["link_efficiency"]
    if span <= s.nvlink_gpus:
        line = s.gpu.nvlink_unidirectional_gb_s * 1e9
        return _Link("nvlink", line * eff, line * inp["nvls_efficiency"] if s.gpu.nvls else 0.0)
    stride = max(1, span // max(ranks, 1))
    per_node = max(1, min(ranks, s.gpus_per_node // stride)) if stride < s.gpus_per_node else 1
    return _Link(s.ib_name, s.ib_rail_b_s * eff * per_node)


def _call_s(op: str, size: float, ranks: int, link: _Link, inp: Mapping[str, float], sharp: bool = False
            ) -> tuple[float, str, float]:
    """(seconds of one call, algorithm, bus bandwidth in nccl-tests' convention)."""
    lat = inp["collective_latency_s"]
    if ranks <= 1:
        return 0.0, "none", link.bus_b_s
    if op == "send_recv":
        return lat + size / link.bus_b_s, "p2p", link.bus_b_s
    if op == "all_reduce":
        ring = 2 * (ranks - 1) / ranks * size / link.bus_b_s
        if link.nvls_b_s and size / link.nvls_b_s < ring:
            return lat + size / link.nvls_b_s, "nvls", link.nvls_b_s * 2 * (ranks - 1) / ranks
        if sharp:
            return lat + size / link.bus_b_s, "sharp", link.bus_b_s
        return lat + ring, "ring", link.bus_b_s
    return lat + (ranks - 1) / ranks * size / link.bus_b_s, "ring", link.bus_b_s


class _Comms:
    def __init__(self, s: StepSetup, inp: Mapping[str, float]) -> None:
        self.s, self.inp = s, inp
        self.items: dict[str, Collective] = {}

    def add(self, name: str, group: str, op: str, ranks: int, size: float, link: _Link,
            windows: list[float], calls_each: int = 1, sharp: bool = False) -> float:
        """``calls_each`` calls per window; returns the exposed seconds of all of them."""
        one, algo, bus = _call_s(op, size, ranks, link, self.inp, sharp)
        if one == 0.0:
            return 0.0
        ov = self.inp["overlap"]
        exposed = sum(max(0.0, one - ov * w) for w in windows) * calls_each
        calls = len(windows) * calls_each
        prev = self.items.get(name)
        total, window, exp, n = one * calls, sum(windows) * calls_each, exposed, calls
        if prev is not None:
            total, window, exp, n = prev.time_s + total, prev.window_s + window, prev.exposed_s + exp, prev.calls + n
        self.items[name] = Collective(name, group, op, ranks, size, n, algo, link.name, bus,
                                      total, window, exp)
        return exposed


# ---------------------------------------------------------------- the step


def estimate_step(s: StepSetup, inp: Mapping[str, float]) -> StepEstimate:
    m = s.model
    lay = _layer(s, inp)
    comms = _Comms(s, inp)
    tokens = s.seq_len / s.cp * s.micro_batch
    act = tokens * m.hidden * 2  # one micro-batch's hidden states, bytes
    mb = s.num_microbatches

    # ---- TP, per layer and micro-batch (summed over the slowest stage's layers below)
    tp_layer_exposed = 0.0
    tp_sample: list[tuple[str, str, list[float], int]] = []
    if s.tp > 1:
        link = _group_link(s, inp, s.tp, s.tp)
        over = inp["tp_comm_overlap"]
        q, p_, mi, mo = lay.fwd_pairs
        if s.sequence_parallel:
            tp_sample += [
                ("tp_forward_all_gather", "all_gather", [over * q, over * mi], 1),
                ("tp_forward_reduce_scatter", "reduce_scatter", [over * p_, over * mo], 1),
                ("tp_backward_all_gather", "all_gather", [over * p_, over * mo], 1),
                ("tp_backward_reduce_scatter", "reduce_scatter", list(lay.wgrad_in), 1),
                ("tp_backward_input_all_gather", "all_gather", list(lay.dgrad_in), 1),
            ]
            if s.recompute == "full":
                tp_sample += [("tp_recompute_all_gather", "all_gather", [over * q, over * mi], 1),
                              ("tp_recompute_reduce_scatter", "reduce_scatter", [over * p_, over * mo], 1)]
        else:
            tp_sample += [
                ("tp_forward_all_reduce", "all_reduce", [over * p_, over * mo], 1),
                ("tp_backward_all_reduce", "all_reduce", list(lay.wgrad_in), 1),
            ]
            if s.recompute == "full":
                tp_sample += [("tp_recompute_all_reduce", "all_reduce", [over * p_, over * mo], 1)]
        probe = _Comms(s, inp)
        for name, op, windows, each in tp_sample:
            tp_layer_exposed += probe.add(name, "tp", op, s.tp, act, link, windows, each)

    # ---- CP: ring attention K/V exchange, forward (K, V) and backward (K, V and their gradients)
    cp_layer_exposed = 0.0
    if s.cp > 1:
        link = _group_link(s, inp, s.tp * s.cp, s.cp)
        kv = 2 * tokens * m.kv_dim / s.tp * 2
        steps = s.cp - 1
        probe = _Comms(s, inp)
        cp_layer_exposed += probe.add("cp_forward_kv_send", "cp", "send_recv", s.cp, kv, link,
                                      [lay.attn_fwd / steps] * steps)
        cp_layer_exposed += probe.add("cp_backward_kv_send", "cp", "send_recv", s.cp, 2 * kv, link,
                                      [lay.attn_bwd / steps] * steps)

    # ---- stages: the slowest one sets the pace
    logit_f, logit_b = _logits(s, inp)
    stage_times = []
    for i, n_layers in enumerate(s.stage_layers):
        t = n_layers * (lay.fwd + lay.bwd + tp_layer_exposed + cp_layer_exposed)
        if i == len(s.stage_layers) - 1:
            t += logit_f + logit_b
        stage_times.append(t)
    slowest = max(range(len(stage_times)), key=lambda i: stage_times[i])
    n_slow = s.stage_layers[slowest]
    t_mb = stage_times[slowest]
    last = slowest == len(s.stage_layers) - 1
    per_mb_gemm = n_slow * (lay.gemm_fwd + lay.gemm_dgrad + lay.gemm_wgrad)
    per_mb_attn = n_slow * (lay.attn_fwd + lay.attn_bwd)
    per_mb_mem = n_slow * (lay.mem_fwd + lay.mem_bwd)
    if last:
        per_mb_gemm += logit_f + logit_b
    per_mb_rec = n_slow * lay.recompute

    # record the TP / CP collectives once per layer pass of the whole step
    passes = mb * n_slow
    if s.tp > 1:
        link = _group_link(s, inp, s.tp, s.tp)
        for name, op, windows, each in tp_sample:
            comms.add(name, "tp", op, s.tp, act, link, windows, each * passes)
    if s.cp > 1:
        link = _group_link(s, inp, s.tp * s.cp, s.cp)
        kv = 2 * tokens * m.kv_dim / s.tp * 2
        steps = s.cp - 1
        comms.add("cp_forward_kv_send", "cp", "send_recv", s.cp, kv, link, [lay.attn_fwd / steps] * steps, passes)
        comms.add("cp_backward_kv_send", "cp", "send_recv", s.cp, 2 * kv, link,
                  [lay.attn_bwd / steps] * steps, passes)

    bubble = (s.pp - 1) / s.vpp * t_mb if s.pp > 1 else 0.0

    # ---- PP: activations forward, gradients backward, per micro-batch and model chunk
    pp_exposed = 0.0
    if s.pp > 1:
        link = _group_link(s, inp, s.tp * s.cp * s.dp * s.pp, s.pp)
        msg = act / (s.tp if (s.sequence_parallel and s.tp > 1) else 1)
        chunk = t_mb / (2 * s.vpp)
        fill = 2 * (s.pp - 1)
        pp_exposed += comms.add("pp_fill_drain_send_recv", "pp", "send_recv", s.pp, msg, link, [0.0] * fill)
        pp_exposed += comms.add("pp_steady_send_recv", "pp", "send_recv", s.pp, msg, link,
                                [chunk] * (2 * mb * s.vpp))

    # ---- DP (x CP): gradients and parameters
    shards = s.dp * s.cp
    dp_exposed = 0.0
    optimizer_params = s.params_per_gpu / (shards if s.zero_stage >= 1 else 1)
    if shards > 1:
        link = _group_link(s, inp, s.tp * s.cp * s.dp, shards)
        ov = inp["dp_overlap"]
        grads = s.params_per_gpu * s.grad_bytes
        weights = s.params_per_gpu * 2
        t_fwd = t_mb * 1 / 3  # a micro-batch's forward is about a third of its forward + backward
        t_bwd = t_mb - t_fwd
        sharp = inp["ib_sharp"] >= 0.5 and link.name != "nvlink"
        if s.zero_stage == 0:
            dp_exposed += comms.add("dp_gradient_all_reduce", "dp", "all_reduce", shards, grads, link,
                                    [ov * t_bwd], sharp=sharp)
        elif s.zero_stage in (1, 2):
            dp_exposed += comms.add("dp_gradient_reduce_scatter", "dp", "reduce_scatter", shards, grads, link,
                                    [ov * t_bwd])
            dp_exposed += comms.add("dp_parameter_all_gather", "dp", "all_gather", shards, weights, link,
                                    [ov * t_fwd])
        else:
            dp_exposed += comms.add("dp_parameter_all_gather", "dp", "all_gather", shards, weights, link,
                                    [ov * t_fwd] * mb + [ov * t_bwd] * mb)
            dp_exposed += comms.add("dp_gradient_reduce_scatter", "dp", "reduce_scatter", shards, grads, link,
                                    [ov * t_bwd] * mb)
    optimizer = optimizer_params * OPTIMIZER_BYTES_PER_PARAM / _hbm(s.gpu, inp)

    return StepEstimate(
        stage_microbatch_s=t_mb, gemm_s=mb * per_mb_gemm, attention_s=mb * per_mb_attn,
        memory_bound_s=mb * per_mb_mem, recompute_s=mb * per_mb_rec,
        tp_exposed_s=mb * n_slow * tp_layer_exposed, cp_exposed_s=mb * n_slow * cp_layer_exposed,
        bubble_s=bubble, pp_exposed_s=pp_exposed, dp_exposed_s=dp_exposed, optimizer_s=optimizer,
        layer_s=lay.fwd + lay.bwd + tp_layer_exposed + cp_layer_exposed, collectives=tuple(comms.items.values()),
    )
