"""Serving deployments resolved: the plan's numbers turned into what runs.

For each planned deployment: its node group, engine and pinned image version, replicas and their
bounds, checkpoint paths (Lustre or a local NVMe copy), the NCCL environment of multi-node
replicas, and the engine's command-line arguments (``vllm serve``, ``trtllm-serve``), each tied to
the blueprint key that asks for it. Computed once, in :func:`aiinfra.plan.cluster.plan_cluster`;
checks (:mod:`aiinfra.checks.serving`) and renderers (:mod:`aiinfra.render.serving`) read it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiinfra.catalog import engines as eng
from aiinfra.plan.fabric_env import nccl_env
from aiinfra.plan.mirror import site_image
from aiinfra.plan.serving import ServingPlan, weight_bytes
from aiinfra.spec.cluster import Cluster, Group
from aiinfra.spec.fabric import FabricSummary
from aiinfra.spec.models import ServingDeployment

MASTER_PORT = 29500  # torch.distributed rendezvous of vLLM's multi-node multiprocessing executor
STAGING_HEADROOM = 1.1  # local NVMe copy of a checkpoint: its bytes x this


# ---------------------------------------------------------------- the resolved deployment


@dataclass(frozen=True)
class Arg:
    """One engine argument and the blueprint key (below ``serving[i]``) that asks for it."""

    flag: str
    value: str | None = None
    key: tuple = ()
    feature: str | None = None  # an engine feature the argument needs (engines.Engine.features)

    def tokens(self) -> list[str]:
        return [self.flag] if self.value is None else [self.flag, self.value]


@dataclass
class ResolvedDeployment:
    """A deployment with everything resolved: plan, image, version, pods, paths, arguments."""

    index: int
    dep: ServingDeployment
    plan: ServingPlan
    group: Group
    engine: eng.Engine
    image: str
    image_key: str
    version: eng.Version | None
    weights_dir: str  # checkpoint directory as the server opens it (Lustre path or local copy)
    lustre_weights: str  # checkpoint directory on Lustre
    draft_lustre_weights: str | None
    draft_dir: str | None
    lustre_mount: str  # mount point of the parallel file system (storage.parallel_fs: Lustre or GPFS)
    checkpoint_bytes: float
    replicas: int
    min_replicas: int
    max_replicas: int
    fabric: FabricSummary | None = None
    #: NCCL/UCX environment of a multi-node replica's pods (the same function as training's); {} otherwise
    nccl: dict[str, str] = field(default_factory=dict)
    #: storage.parallel_fs (lustre or gpfs): names the pods' volume and claim of that file system
    parallel_fs: str = "lustre"

    @property
    def name(self) -> str:
        return self.dep.name

    @property
    def gpus_per_node(self) -> int:
        return self.group.gpus_per_node

    @property
    def nodes_per_replica(self) -> int:
        return self.plan.nodes_per_replica

    @property
    def multi_node(self) -> bool:
        return self.plan.multi_node

    @property
    def gpus_per_pod(self) -> int:
        return self.gpus_per_node if self.multi_node else self.plan.gpus_per_replica

    @property
    def served_model_name(self) -> str:
        return self.dep.served_model_name or self.dep.name

    @property
    def service_name(self) -> str:
        """The client Service: everything that addresses the API (ServiceMonitor target label, KEDA
        queries, alerts, Pulumi's service_url, gateway routes) takes the name from here. Not the
        deployment's own name: a LeaderWorkerSet creates a headless Service of its own name for leader
        addressing (LWS v0.10.0, pkg/controllers/leaderworkerset_controller.go reconcileHeadlessServices;
        ``<name>-<index>`` per replica with subdomainPolicy UniquePerReplica, pod_controller.go)."""
        return f"{self.dep.name}-api"

    @property
    def api_key_secret(self) -> str:
        return self.dep.api_key_secret or f"{self.dep.name}-api-key"

    @property
    def kind(self) -> str:
        return "LeaderWorkerSet" if self.multi_node else "Deployment"

    @property
    def checkpoint_quantization(self) -> str | None:
        """``quant_method`` of the checkpoint when it is pre-quantized (vLLM reads it from config.json);
        None: 16-bit weights (TensorRT-LLM's engine build always starts from them)."""
        if self.dep.checkpoint_quantization is not None:
            return self.dep.checkpoint_quantization
        return eng.PREQUANTIZED_ONLY.get(self.dep.quantization) if self.engine.name == "vllm" else None

    @property
    def calibrates(self) -> bool:
        """TensorRT-LLM: the engine build's quantize.py calibrates (every format but 16-bit, FP8 KV cache)."""
        return self.engine.name == "tensorrt-llm" and (
            eng.TRTLLM_QFORMAT.get(self.dep.quantization) is not None or self.dep.kv_cache_dtype == "fp8")

    @property
    def path(self) -> tuple:
        return ("serving", self.index)

    def gpus(self, replicas: int) -> int:
        """GPUs that ``replicas`` replicas hold (multi-node replicas hold whole nodes)."""
        return replicas * self.nodes_per_replica * self.gpus_per_pod if self.multi_node else replicas * self.gpus_per_pod

    def to_dict(self) -> dict[str, Any]:
        """What the deployment runs, as ``aiinfra plan --json`` prints it (the rendered objects say the same)."""
        multi_mp = self.multi_node and self.dep.distributed_backend == "mp" and self.engine.name == "vllm"
        return {
            "name": self.name, "kind": self.kind, "engine": self.engine.name, "node_group": self.group.name,
            "image": self.image, "tp": self.plan.tp, "pp": self.plan.pp,
            "gpus_per_replica": self.plan.gpus_per_replica, "nodes_per_replica": self.nodes_per_replica,
            "gpus_per_pod": self.gpus_per_pod, "replicas": self.replicas, "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas, "weights_dir": self.weights_dir, "nccl": dict(self.nccl),
            "args": vllm_serve_argv(self) if self.engine.name == "vllm" else trtllm_serve_argv(self),
            "worker_args": vllm_serve_argv(self, "worker") if multi_mp else None,
        }

    @property
    def engine_dir(self) -> str:
        """TensorRT-LLM: where the build Job writes the engine, keyed by what shapes it."""
        shape = [self.dep.model, self.plan.tp, self.plan.pp, self.dep.quantization, self.dep.dtype,
                 self.dep.kv_cache_dtype, self.dep.max_model_len, self.plan.request.max_num_seqs, self.image]
        if self.calibrates:  # the calibration data sets the quantization scales
            shape.append(self.dep.calibration_dataset)
        digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.lustre_mount}/engines/{self.dep.name}/{digest}"


def resolve_deployments(cluster: Cluster, serving: tuple[ServingPlan, ...]) -> tuple[ResolvedDeployment, ...]:
    """Every planned deployment with its pods, paths and engine arguments resolved (once, in the plan)."""
    bp = cluster.blueprint
    plans = {p.request.name: p for p in serving}
    fs = bp.storage.parallel  # the chosen parallel file system (Lustre or GPFS)
    mount = fs.mountpoint.rstrip("/") if fs else "/lustre"
    out: list[ResolvedDeployment] = []
    for i, dep in enumerate(bp.serving):
        plan = plans.get(dep.name)
        group = cluster.groups.get(dep.node_group)
        if plan is None or group is None or not group.gpus_per_node:
            continue  # the planner already reported why
        engine = eng.engine(dep.engine)
        key = dep.image or dep.engine
        image = site_image(cluster, bp.versions.images.get(key, ""))
        version = eng.image_version(image) if image else None
        lustre_weights = dep.weights_path or f"{mount}/models/{dep.model}"
        spec_ = dep.speculative
        draft_lustre = (spec_.weights_path or f"{mount}/models/{spec_.draft_model}") if spec_ else None
        local = dep.weights_source == "local-nvme"
        w = plan.weights_bytes
        if plan.request.draft is not None:
            w += weight_bytes(plan.request.draft, plan.request.dtype, plan.request.dtype).total
        capacity = plan.replicas_in(group.capacity)
        replicas = max(1, min(plan.replicas, capacity))
        min_r = dep.min_replicas or replicas
        max_r = dep.max_replicas or max(min_r, replicas)
        out.append(ResolvedDeployment(
            index=i, dep=dep, plan=plan, group=group, engine=engine, image=image, image_key=key, version=version,
            weights_dir="/models/target" if local else lustre_weights,
            lustre_weights=lustre_weights,
            draft_lustre_weights=draft_lustre,
            draft_dir=("/models/draft" if local else draft_lustre) if draft_lustre else None,
            lustre_mount=mount, checkpoint_bytes=w, replicas=min_r if dep.autoscaling != "none" else replicas,
            min_replicas=min_r, max_replicas=max_r, fabric=cluster.fabric,
            nccl=nccl_env(cluster, group, in_pod=True) if plan.multi_node else {},
            parallel_fs=bp.storage.parallel_fs,
        ))
    return tuple(out)


# ---------------------------------------------------------------- engine arguments


def vllm_serve_argv(s: ResolvedDeployment, role: str = "leader") -> list[str]:
    """What follows ``vllm serve``: the checkpoint directory (positional MODEL: ``vllm serve`` refuses
    ``--model`` in 0.8.5 and warns it away in 0.12.0, FlexibleArgumentParser.parse_args in vllm/utils.py
    and vllm/utils/argparse_utils.py), then the flags of the API server or of a headless worker, then
    the blueprint's ``extra_args`` (checks/engine_flags.py checks each against the pinned version)."""
    args = vllm_worker_args(s) if role == "worker" else vllm_args(s)
    return [s.weights_dir, *flatten(args), *s.dep.extra_args]


def trtllm_serve_argv(s: ResolvedDeployment) -> list[str]:
    """What follows ``trtllm-serve``: the engine directory, then the flags."""
    return [s.engine_dir, *flatten(trtllm_serve_args(s)), *s.dep.extra_args]


def vllm_args(s: ResolvedDeployment) -> list[Arg]:
    """``vllm serve MODEL`` flags of the API server (the leader of a multi-node group)."""
    d, p = s.dep, s.plan
    # a pre-quantized checkpoint says its own method; a flag that disagreed would be refused
    quant = None if s.checkpoint_quantization else eng.VLLM_ONLINE_QUANTIZATION.get(d.quantization)
    # bitsandbytes before vLLM 0.8.2: both flags, pre-quantized or not (eng.VLLM_BNB_SETS_LOAD_FORMAT)
    bnb_load_format = d.quantization == "nf4" and (s.version or (0,)) < eng.VLLM_BNB_SETS_LOAD_FORMAT
    if bnb_load_format:
        quant = eng.BNB_QUANT_METHOD
    args = [
        Arg("--served-model-name", s.served_model_name, ("served_model_name",)),
        Arg("--host", "0.0.0.0"),
        Arg("--port", str(s.engine.port)),
        Arg("--tensor-parallel-size", str(p.tp), ("tp",)),
        Arg("--pipeline-parallel-size", str(p.pp), ("pp",)),
        Arg("--dtype", eng.VLLM_DTYPE[d.dtype], ("dtype",)),
    ]
    if quant:
        args.append(Arg("--quantization", quant, ("quantization",)))
    if bnb_load_format:
        args.append(Arg("--load-format", eng.BNB_QUANT_METHOD, ("quantization",)))
    args += [
        Arg("--kv-cache-dtype", d.kv_cache_dtype, ("kv_cache_dtype",)),
        Arg("--max-model-len", str(d.max_model_len), ("max_model_len",)),
        Arg("--gpu-memory-utilization", f"{d.gpu_memory_utilization:g}", ("gpu_memory_utilization",)),
        Arg("--max-num-seqs", str(p.request.max_num_seqs)),
        Arg("--enable-prefix-caching" if d.prefix_caching else "--no-enable-prefix-caching", None,
            ("prefix_caching",)),
    ]
    if d.chunked_prefill:
        args.append(Arg("--enable-chunked-prefill", None, ("chunked_prefill",)))
    if d.speculative is not None:
        key = ("speculative", "draft_model")
        version = s.version or (0,)
        if eng.VLLM.flags["--speculative-config"].has(version):
            config = {"model": s.draft_dir, "num_speculative_tokens": d.speculative.num_tokens}
            args.append(Arg("--speculative-config", json.dumps(config, sort_keys=True), key,
                            "draft-model-speculation"))
        else:
            args += [Arg("--speculative-model", s.draft_dir, key, "draft-model-speculation"),
                     Arg("--num-speculative-tokens", str(d.speculative.num_tokens), ("speculative", "num_tokens"))]
    if s.multi_node:
        key = ("distributed_backend",)
        args.append(Arg("--distributed-executor-backend", d.distributed_backend, key))
        if d.distributed_backend == "mp":
            args += [Arg("--nnodes", str(s.nodes_per_replica), key), Arg("--node-rank", "0", key),
                     Arg("--master-addr", "$(LWS_LEADER_ADDRESS)", key),
                     Arg("--master-port", str(MASTER_PORT), key)]
    return args


def vllm_worker_args(s: ResolvedDeployment) -> list[Arg]:
    """Workers of a multi-node group with the multiprocessing executor: the same engine
    arguments, their own node rank, and no API server (``--headless``)."""
    out = [a for a in vllm_args(s) if a.flag != "--node-rank"]
    key = ("distributed_backend",)
    return out + [Arg("--node-rank", "$(LWS_WORKER_INDEX)", key), Arg("--headless", None, key)]


def trtllm_serve_args(s: ResolvedDeployment) -> list[Arg]:
    p, d = s.plan, s.dep
    free = p.kv_cache_per_gpu_bytes / max(1.0, p.request.gpu.memory_bytes - p.weights_per_gpu_bytes
                                          - p.non_torch_bytes - p.activation_bytes)
    return [
        Arg("--tokenizer", s.weights_dir, ("weights_path",)),
        Arg("--host", "0.0.0.0"),
        Arg("--port", str(s.engine.port)),
        Arg("--tp_size", str(p.tp), ("tp",)),
        Arg("--pp_size", str(p.pp), ("pp",)),
        Arg("--max_batch_size", str(p.request.max_num_seqs)),
        Arg("--max_seq_len", str(d.max_model_len), ("max_model_len",)),
        Arg("--max_num_tokens", str(p.request.max_num_batched_tokens)),
        Arg("--kv_cache_free_gpu_memory_fraction", f"{min(0.95, free):.2f}", ("gpu_memory_utilization",)),
    ]


def flatten(args: list[Arg]) -> list[str]:
    return [t for a in args for t in a.tokens()]


