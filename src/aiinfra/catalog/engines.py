"""Serving engines: which command-line flags and features each pinned version has.

Facts, with where they come from (vLLM's engine arguments ``vllm/engine/arg_utils.py`` and the
pull requests named), so `aiinfra validate` can refuse a deployment that needs a flag its pinned
image lacks, before a pod crash-loops on ``unrecognized arguments``.

vLLM (``vllm serve``, image ``vllm/vllm-openai:vX.Y.Z``):

- Present in every version this table knows (0.6.0 and later): ``--model``,
  ``--served-model-name``, ``--host``, ``--port``, ``--tensor-parallel-size``,
  ``--pipeline-parallel-size``, ``--dtype`` (auto/half/float16/bfloat16), ``--kv-cache-dtype``
  (auto/fp8/fp8_e4m3/fp8_e5m2), ``--max-model-len``, ``--gpu-memory-utilization``,
  ``--max-num-seqs``, ``--quantization`` (awq, awq_marlin, gptq, gptq_marlin, fp8 ...),
  ``--enable-prefix-caching``, ``--enable-chunked-prefill``, ``--distributed-executor-backend``
  (ray, mp). The API key is read from ``--api-key`` or the ``VLLM_API_KEY`` environment variable
  and guards the ``/v1`` routes; ``/health`` and ``/metrics`` stay open.
- ``--no-enable-prefix-caching``: the flag became a BooleanOptionalAction when V1 made prefix
  caching default-on (0.7.0).
- Speculative decoding with a draft model: ``--speculative-model`` + ``--num-speculative-tokens``
  (since 0.4.1, PR #3706); ``--speculative-config '<json>'`` replaced them (PR #14434, 0.8.0);
  the old flags were removed in 0.8.3 (PR #15466). Draft-model speculation ran on the V0 engine
  (from 0.8 the V1 default falls back to V0 for it); 0.11.0 removed V0 and its V1 engine refuses a
  draft model ("Speculative decoding with draft model is not supported yet", still in 0.13.0).
- Multi-node replicas: through Ray (``--distributed-executor-backend ray``) in every version;
  without Ray, vLLM's multiprocessing executor across nodes, ``--nnodes --node-rank
  --master-addr --master-port`` (+ ``--headless`` on the nodes that run no API server), came with
  PR #23691 (first in 0.11.1). ``--headless`` itself arrived for multi-node data parallel in 0.9.0.
- Metrics (Prometheus, ``/metrics`` on the API port): ``vllm:num_requests_waiting``,
  ``vllm:num_requests_running``, ``vllm:time_to_first_token_seconds`` (histogram) in every version;
  KV-cache usage (fraction 0-1) is ``vllm:gpu_cache_usage_perc`` up to 0.9, renamed
  ``vllm:kv_cache_usage_perc`` (PR #18354, deprecated in 0.10: both emitted), the old name hidden in
  0.11 and removed in 0.12 (PR #29330).

TensorRT-LLM (``nvcr.io/nvidia/tensorrt-llm/release:X.Y.Z``): an engine is built in two steps,
checkpoint conversion with the parallel layout and quantization (``examples/<family>/
convert_checkpoint.py`` or ``examples/quantization/quantize.py --qformat fp8|int4_awq|int8_sq``,
both taking ``--tp_size --pp_size``), then ``trtllm-build --checkpoint_dir --output_dir``; the
server is ``trtllm-serve <engine_dir> --tokenizer <hf_dir> --host --port --tp_size --pp_size
--max_batch_size --max_seq_len --kv_cache_free_gpu_memory_fraction``. trtllm-serve serves
``/health``, ``/v1/completions``, ``/v1/chat/completions``; its ``/metrics`` returns JSON
iteration statistics, not the Prometheus text format, and it has no API-key option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiinfra.catalog.versions import version_tuple

Version = tuple[int, ...]


@dataclass(frozen=True)
class FlagSpan:
    """A flag (or feature) exists from ``since`` up to, not including, ``until`` (None: still there)."""

    since: str
    until: str | None = None
    note: str = ""

    def has(self, version: Version) -> bool:
        if version < version_tuple(self.since):
            return False
        return self.until is None or version < version_tuple(self.until)

    def describe(self) -> str:
        span = f">= {self.since}" if self.until is None else f"{self.since} to before {self.until}"
        return span + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Engine:
    name: str  # blueprint value of ServingDeployment.engine
    title: str
    image_repositories: tuple[str, ...]  # image names whose tag is the engine version
    oldest: str  # oldest version the table describes
    newest_minor: str  # newest major.minor the table describes (patch releases of it are accepted)
    flags: dict[str, FlagSpan]
    features: dict[str, FlagSpan]
    port: int
    health_path: str
    metrics_path: str | None  # Prometheus text-format metrics; None: none
    api_key_env: str | None
    non_root: bool  # the image runs as an arbitrary non-root UID given a writable HOME and caches

    def knows(self, version: Version) -> bool:
        return version_tuple(self.oldest) <= version and version[:2] <= version_tuple(self.newest_minor)[:2]


_ALWAYS = "0.6.0"

VLLM = Engine(
    name="vllm",
    title="vLLM",
    image_repositories=("vllm/vllm-openai", "docker.io/vllm/vllm-openai"),
    oldest=_ALWAYS,
    newest_minor="0.12",
    flags={
        **{f: FlagSpan(_ALWAYS) for f in (
            "--model", "--served-model-name", "--host", "--port", "--tensor-parallel-size",
            "--pipeline-parallel-size", "--dtype", "--kv-cache-dtype", "--max-model-len",
            "--gpu-memory-utilization", "--max-num-seqs", "--quantization", "--enable-prefix-caching",
            "--enable-chunked-prefill", "--distributed-executor-backend", "--disable-log-requests",
        )},
        "--no-enable-prefix-caching": FlagSpan("0.7.0", note="BooleanOptionalAction with V1's default-on caching"),
        "--speculative-model": FlagSpan("0.4.1", "0.8.3", "replaced by --speculative-config, PR #15466"),
        "--num-speculative-tokens": FlagSpan("0.4.1", "0.8.3", "replaced by --speculative-config, PR #15466"),
        "--speculative-config": FlagSpan("0.8.0", note="JSON, PR #14434"),
        "--nnodes": FlagSpan("0.11.1", note="multiprocessing executor across nodes, PR #23691"),
        "--node-rank": FlagSpan("0.11.1", note="PR #23691"),
        "--master-addr": FlagSpan("0.11.1", note="PR #23691"),
        "--master-port": FlagSpan("0.11.1", note="PR #23691"),
        "--headless": FlagSpan("0.9.0", note="nodes without an API server"),
    },
    features={
        "draft-model-speculation": FlagSpan(
            "0.4.1", "0.11.0", "V0 engine only; 0.11.0 removed V0 and V1 refuses a draft model"
        ),
        "metric:vllm:gpu_cache_usage_perc": FlagSpan(_ALWAYS, "0.11.0", "hidden in 0.11, removed in 0.12"),
        "metric:vllm:kv_cache_usage_perc": FlagSpan("0.10.0", note="PR #18354"),
    },
    port=8000,
    health_path="/health",
    metrics_path="/metrics",
    api_key_env="VLLM_API_KEY",
    non_root=True,
)

TENSORRT_LLM = Engine(
    name="tensorrt-llm",
    title="TensorRT-LLM",
    image_repositories=("nvcr.io/nvidia/tensorrt-llm/release",),
    oldest="0.17.0",
    newest_minor="0.20",
    flags={f: FlagSpan("0.17.0") for f in (
        "--tokenizer", "--host", "--port", "--tp_size", "--pp_size", "--max_batch_size", "--max_seq_len",
        "--max_num_tokens", "--kv_cache_free_gpu_memory_fraction",
    )},
    features={},
    port=8000,
    health_path="/health",
    metrics_path=None,
    api_key_env=None,
    non_root=True,
)

ENGINES: dict[str, Engine] = {e.name: e for e in (VLLM, TENSORRT_LLM)}

#: Blueprint quantization -> vLLM --quantization. Marlin kernels need compute capability 8.0+
#: (Ampere, Hopper); given the plain method vLLM would keep the slower kernel. int8 (W8A8)
#: checkpoints carry their compressed-tensors config: vLLM reads it, no flag.
VLLM_QUANTIZATION: dict[str, tuple[str | None, str | None]] = {
    # format: (cc >= 8.0, older GPUs)
    "none": (None, None),
    "bf16": (None, None),
    "fp16": (None, None),
    "awq-int4": ("awq_marlin", "awq"),
    "gptq-int4": ("gptq_marlin", "gptq"),
    "fp8": ("fp8", "fp8"),
    "int8": (None, None),
}

VLLM_DTYPE = {"bf16": "bfloat16", "fp16": "float16"}

#: Blueprint quantization -> TensorRT-LLM quantize.py --qformat (None: convert_checkpoint.py, no
#: quantization). GPTQ checkpoints need a separate conversion path that is not rendered.
TRTLLM_QFORMAT: dict[str, str | None] = {"none": None, "fp8": "fp8", "awq-int4": "int4_awq", "int8": "int8_sq"}


def engine(name: str) -> Engine:
    return ENGINES[name]


def image_version(image: str) -> Version | None:
    """The version in an image tag: ``vllm/vllm-openai:v0.8.5`` -> (0, 8, 5); None without a usable tag."""
    ref = image.split("@", 1)[0]
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return None
    try:
        return version_tuple(tag)
    except ValueError:
        return None


def format_version(version: Version) -> str:
    return ".".join(map(str, version))


def missing(engine_: Engine, version: Version, names: list[str]) -> list[tuple[str, FlagSpan | None]]:
    """The flags or features among ``names`` that ``version`` lacks, with their span (None: unknown)."""
    out = []
    for name in names:
        span = engine_.flags.get(name) or engine_.features.get(name)
        if span is None or not span.has(version):
            out.append((name, span))
    return out


def kv_cache_usage_metric(version: Version) -> str:
    """vLLM's KV-cache usage gauge (0-1) under the name the pinned version emits by default."""
    if VLLM.features["metric:vllm:kv_cache_usage_perc"].has(version):
        return "vllm:kv_cache_usage_perc"
    return "vllm:gpu_cache_usage_perc"


WAITING_METRIC = "vllm:num_requests_waiting"
TTFT_METRIC = "vllm:time_to_first_token_seconds"

# ---------------------------------------------------------------- start-up time (assumptions)

#: Read bandwidth one serving pod gets from Lustre while loading safetensors (conservative: one
#: client, many ranks reading through the page cache; the storage port could give ~25x more).
LUSTRE_LOAD_B_S = 1.0e9
#: Read bandwidth from node-local NVMe (one PCIe Gen4 NVMe drive streams ~3-7 GB/s).
NVME_LOAD_B_S = 3.0e9
#: Engine work after the weights are in GPU memory: memory profiling, KV-cache allocation,
#: CUDA-graph capture and (vLLM V1) torch.compile; minutes on a cold cache.
ENGINE_WARMUP_S = 300.0
#: Safety factor on the start-up estimate before the kubelet gives up.
STARTUP_SAFETY = 1.5


def startup_budget_s(checkpoint_bytes: float, source: str) -> int:
    """Seconds a server may take before it must answer /health: every node reads the whole
    checkpoint (each rank opens every safetensors shard and keeps its slice; the node's page cache
    serves the other ranks), then warms up. (bytes / bandwidth + warm-up) x safety."""
    bandwidth = NVME_LOAD_B_S if source == "local-nvme" else LUSTRE_LOAD_B_S
    return math.ceil((checkpoint_bytes / bandwidth + ENGINE_WARMUP_S) * STARTUP_SAFETY)
