"""The inputs of the training step-time model (:mod:`aiinfra.plan.step_time`): names, defaults, bounds.

Each input is a number the plan prints (table and ``--json``) and a user may set one at a time:
``aiinfra size train --assume NAME=VALUE`` or a training job's ``planner:`` map in the blueprint.
The ``fitted`` ones come from ``benchmarks/calibrate_step_time.py`` over the published tables in
``catalog/data/calibration/training_step_time.csv`` (docs/planner.md has the fit and the
leave-one-table-out report); the others are stated assumptions.

Fitted values: ``benchmarks/calibrate_step_time.py`` over all six tables (the fit puts the GEMM
knee at 0: beyond the wave quantization over the GPU's SMs and the HBM roofline, the published
rows do not resolve a further GEMM-size effect).

Switches (``tp_comm_overlap``, ``dp_overlap``, ``ib_sharp``) are 0 or 1; ``dp_overlap`` and
``ib_sharp`` default from the job (the framework's rendered options, the fabric's ``sharp``) when
not set.
"""

from __future__ import annotations

from dataclasses import dataclass

#: NVLS all-reduce on 8 H100 SXM (NVLink 4, third-generation NVSwitch), at large messages: nccl-tests
#: all_reduce_perf "peak busBw of ~480GB/s (algbw ~275GB/s)" (NCCL maintainer S. Jeaugey,
#: NVIDIA/nccl-tests issue #212, 2024-05-06; the same pair, 480 / 275, measured with NCCL 2.30 in
#: NVIDIA/nccl issue #2140). busbw = algbw x 2 (n - 1) / n, so algbw = 480 x 8 / 14 = 274.3 GB/s
#: against the 450 GB/s line rate (the ring reaches ~370 GB/s busbw: ``link_efficiency``).
NVLS_ALLREDUCE_BUSBW_H100_GB_S = 480.0
NVLS_ALLREDUCE_ALGBW_H100_GB_S = NVLS_ALLREDUCE_BUSBW_H100_GB_S * 8 / (2 * 7)
NVLINK4_LINE_GB_S = 450.0  # H100 SXM NVLink, one direction (900 GB/s total, datasheet)


@dataclass(frozen=True)
class TimeInput:
    name: str
    default: float
    low: float
    high: float
    fitted: bool
    description: str


TIME_INPUTS: dict[str, TimeInput] = {
    i.name: i
    for i in (
        TimeInput("gemm_efficiency_bf16", 0.694, 0.05, 1.0, True,
                  "fraction of the dense BF16/FP16 peak a large GEMM sustains"),
        TimeInput("gemm_efficiency_fp8", 0.540, 0.05, 1.0, True,
                  "fraction of the dense FP8 peak a large FP8 GEMM sustains (only the GEMMs run in FP8)"),
        TimeInput("gemm_knee_s", 0.0, 0.0, 1e-3, True,
                  "fixed cost of one GEMM kernel at peak, s: the GEMM-size knee (a GEMM of knee x peak FLOPs "
                  "runs at half its large-GEMM efficiency)"),
        TimeInput("attention_efficiency", 0.340, 0.05, 1.0, True,
                  "fraction of the dense BF16 peak fused (flash) attention sustains, causal FLOPs"),
        TimeInput("overlap", 0.46, 0.0, 1.0, True,
                  "fraction of an overlappable compute window that hides a collective"),
        TimeInput("hbm_efficiency", 0.8, 0.05, 1.0, False,
                  "fraction of the HBM bandwidth memory-bound kernels (norms, softmax, element-wise) reach"),
        TimeInput("link_efficiency", 0.8, 0.05, 1.0, False,
                  "achievable fraction of a link's one-direction peak for NCCL collectives (bus bandwidth)"),
        TimeInput("nvls_efficiency", NVLS_ALLREDUCE_ALGBW_H100_GB_S / NVLINK4_LINE_GB_S, 0.05, 1.0, False,
                  "NVLS (NVLink SHARP) all-reduce: bytes reduced per second (nccl-tests algbw) as a fraction "
                  "of NVLink's one-direction line rate; NCCL picks it over the ring where it is faster"),
        TimeInput("collective_latency_s", 8e-6, 0.0, 1e-3, False,
                  "fixed latency of one collective or send, s"),
        TimeInput("tp_comm_overlap", 0.0, 0.0, 1.0, False,
                  "1: tensor-parallel collectives of the forward pass and of the input gradients overlap "
                  "with GEMMs (Transformer Engine userbuffers, --tp-comm-overlap); 0: only the input-gradient "
                  "collectives overlap with the weight-gradient GEMMs (what aiinfra renders)"),
        TimeInput("dp_overlap", -1.0, -1.0, 1.0, False,
                  "1: gradient reduce-scatter and parameter all-gather overlap with the backward / forward "
                  "of a micro-batch; 0: they run after / before it; -1: from the framework as rendered "
                  "(DeepSpeed overlap_comm: on; Megatron-LM without --overlap-grad-reduce: off)"),
        TimeInput("ib_sharp", -1.0, -1.0, 1.0, False,
                  "1: InfiniBand SHARP reduces data-parallel all-reduces in the switches (NCCL CollNet); "
                  "-1: from the fabric's sharp setting"),
    )
}

#: Names a blueprint's ``planner:`` map and ``--assume`` accept.
TIME_INPUT_NAMES: tuple[str, ...] = tuple(TIME_INPUTS)


def time_input_problem(name: str, value: float) -> str | None:
    """Why ``name: value`` is not a valid step-time input, or None."""
    spec = TIME_INPUTS.get(name)
    if spec is None:
        return f"unknown step-time input '{name}'; known: {', '.join(TIME_INPUT_NAMES)}"
    if not spec.low <= value <= spec.high:
        return f"{name} must be between {spec.low:g} and {spec.high:g}, got {value:g}"
    return None
