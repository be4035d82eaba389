"""GPU models.

Sources (datasheets):
- NVIDIA H100 Tensor Core GPU datasheet (SXM5): 80 GB HBM3, 3.35 TB/s, BF16 989.4 TFLOP/s dense
  (1,979 with sparsity), FP8 1,978.9 dense, INT8 1,978.9 TOPS dense, 700 W, NVLink 900 GB/s.
- NVIDIA H200 datasheet (SXM): 141 GB HBM3e, 4.8 TB/s, same tensor-core rates as H100 SXM, 700 W,
  NVLink 900 GB/s.
- NVIDIA A100 datasheet (SXM4): 80 GB HBM2e 2,039 GB/s or 40 GB HBM2 1,555 GB/s, BF16 312 TFLOP/s
  dense, INT8 624 TOPS dense, no FP8, 400 W, NVLink 600 GB/s.
NVIDIA's "GB" for device memory is the binary size the device reports (81,559 MiB usable on an
H100 80GB), so memory is kept in GiB (2**30 bytes).
NVLink bandwidth is the total bidirectional per-GPU figure of the datasheet; the planner uses half
of it per direction.
NVLS (NVLink SHARP): the third-generation NVSwitch of HGX H100/H200 reduces all-reduce data inside
the switch; NCCL uses it as its NVLS algorithm, "an AllReduce offload system over NVLink only",
within one NVLink domain (NCCL maintainers, NVIDIA/nccl issue #1031). A100's NVSwitch has none.
Streaming multiprocessors (NVIDIA A100 and H100 architecture whitepapers): A100 108, H100 SXM5 132
(H200 SXM: the same GH100 configuration); the step-time model uses them for GEMM wave quantization.

A blueprint adds GPU types of its own under ``catalog.gpus`` (:class:`aiinfra.spec.models.GpuType`);
:func:`resolve_gpu` looks a name up in those first, then here, so additions stay with the blueprint
that makes them (nothing here is changed). ``nvlink_domain_gpus`` may be larger than a node's GPUs:
a GB200 NVL72 rack joins 18 trays of 4 GPUs in one 72-GPU NVLink domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiinfra.catalog.names import lookup, resolve_with

GIB = 2**30


@dataclass(frozen=True)
class GpuModel:
    name: str
    product: str  # the product name nvidia-smi / the GPU Operator's feature discovery reports
    memory_bytes: int
    bf16_dense_tflops: float
    fp8_dense_tflops: float | None  # None: no FP8 tensor cores
    int8_dense_tops: float
    hbm_bandwidth_gb_s: float  # GB/s = 1e9 bytes/s
    tdp_w: int
    nvlink_bandwidth_gb_s: float  # total bidirectional per GPU (datasheet figure)
    nvlink_domain_gpus: int  # GPUs that share one NVLink/NVSwitch domain (HGX baseboard)
    compute_capability: str | None  # None: not an NVIDIA GPU
    vendor: str = "nvidia"  # nvidia | amd: the stack aiinfra renders (driver, CUDA, NCCL, DCGM) is NVIDIA's
    nvls: bool = False  # NVSwitch with NVLink SHARP (in-switch all-reduce, NCCL's NVLS algorithm)
    sm_count: int = 0  # streaming multiprocessors (GEMM wave quantization); 0: unknown, not modelled

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    @property
    def nvlink_unidirectional_gb_s(self) -> float:
        return self.nvlink_bandwidth_gb_s / 2

    def dense_tflops(self, precision: str) -> float:
        """Peak dense tensor throughput for ``bf16``/``fp16``/``fp8``/``int8``."""
        if precision in ("bf16", "fp16"):
            return self.bf16_dense_tflops
        if precision == "fp8":
            if self.fp8_dense_tflops is None:
                raise ValueError(f"{self.name} has no FP8 tensor cores")
            return self.fp8_dense_tflops
        if precision == "int8":
            return self.int8_dense_tops
        raise ValueError(f"unknown precision '{precision}'")


GPUS: dict[str, GpuModel] = {
    g.name: g
    for g in (
        GpuModel("h100-80gb", "NVIDIA-H100-80GB-HBM3", 80 * GIB, 989.4, 1978.9, 1978.9, 3350, 700, 900, 8, "9.0", nvls=True,
                 sm_count=132),
        GpuModel("h200-141gb", "NVIDIA-H200", 141 * GIB, 989.4, 1978.9, 1978.9, 4800, 700, 900, 8, "9.0", nvls=True,
                 sm_count=132),
        GpuModel("a100-80gb", "NVIDIA-A100-SXM4-80GB", 80 * GIB, 312.0, None, 624.0, 2039, 400, 600, 8, "8.0",
                 sm_count=108),
        GpuModel("a100-40gb", "NVIDIA-A100-SXM4-40GB", 40 * GIB, 312.0, None, 624.0, 1555, 400, 600, 8, "8.0",
                 sm_count=108),
    )
}

GPU_ALIASES: dict[str, str] = {
    "h100": "h100-80gb",
    "h100-sxm": "h100-80gb",
    "h100-sxm-80gb": "h100-80gb",
    "h100-sxm5-80gb": "h100-80gb",
    "h200": "h200-141gb",
    "h200-sxm-141gb": "h200-141gb",
    "a100": "a100-80gb",
    "a100-sxm-80gb": "a100-80gb",
    "a100-sxm4-80gb": "a100-80gb",
    "a100-sxm-40gb": "a100-40gb",
    "a100-sxm4-40gb": "a100-40gb",
}


def gpu(name: str) -> GpuModel:
    """Look a GPU up by name or alias; KeyError with a suggestion otherwise."""
    return lookup(GPUS, GPU_ALIASES, name, "GPU model")


def known_gpu_names() -> list[str]:
    return sorted(GPUS) + sorted(GPU_ALIASES)


def is_builtin_gpu(name: str) -> bool:
    key = name.strip().lower()
    return key in GPUS or key in GPU_ALIASES


def custom_gpu(name: str, spec: Any) -> GpuModel:
    """A GPU type of a blueprint's ``catalog.gpus`` (:class:`aiinfra.spec.models.GpuType`, or anything
    with its attributes) as a catalog entry."""
    return GpuModel(
        name, spec.product, spec.memory, spec.bf16_dense_tflops, spec.fp8_dense_tflops, spec.int8_dense_tops,
        spec.memory_bandwidth / 1e9, spec.tdp_w, spec.nvlink_bandwidth / 1e9, spec.nvlink_domain_gpus,
        spec.compute_capability, spec.vendor,
    )


def resolve_gpu(name: str, custom: Mapping[str, Any] | None = None) -> GpuModel:
    """A blueprint's GPU reference: a key of its ``catalog.gpus`` or a built-in name or alias."""
    return resolve_with(name, custom, custom_gpu, gpu, "gpus")
