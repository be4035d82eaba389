"""LLM serving on Kubernetes: one kustomize folder per deployment under ``k8s/serving/<name>/``.

Every number comes from the planner (:func:`aiinfra.plan.cluster.plan_cluster`): TP, PP, memory
budget, sequences, replicas. Every engine flag is checked against the pinned image's version in
:mod:`aiinfra.catalog.engines` (``check_serving`` is the ``cluster``-phase validator's body).

- vLLM, one node per replica (TP x PP <= GPUs per node): a Deployment.
- vLLM, several nodes per replica: a LeaderWorkerSet (leaderworkerset.x-k8s.io/v1); the leader
  runs the API server, the workers join it, by vLLM's multiprocessing executor (``--nnodes``) or
  by a Ray cluster per group (``distributed_backend: ray``). Each pod takes a whole node.
- TensorRT-LLM: a Job builds the engine onto Lustre (quantize.py with TP/PP/quantization from the
  plan, then trtllm-build), a Deployment runs trtllm-serve on it.
- Around each: ServiceAccount (no token), Service (ClusterIP), PodDisruptionBudget,
  NetworkPolicy (gateway namespace in, DNS and declared CIDRs out), and for vLLM a ServiceMonitor,
  PrometheusRule alerts and the declared autoscaler (KEDA ScaledObject or HPA).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from aiinfra.catalog import engines as eng
from aiinfra.catalog.k8s_resources import (
    GPU_RESOURCE,
    LUSTRE_PVC,
    NODE_GROUP_LABEL,
    RDMA_SHARED_DEVICE_RESOURCE,
    SU_LABEL,
)
from aiinfra.errors import Problem
from aiinfra.plan.cluster import plan_cluster
from aiinfra.plan.serving import ServingPlan, weight_bytes
from aiinfra.render import Artifacts, renderer
from aiinfra.render.kubernetes import component, uses_kubernetes
from aiinfra.render.templates import dump_yaml, dump_yaml_documents
from aiinfra.spec.cluster import Cluster, Group
from aiinfra.spec.fabric import FabricSummary, su_name
from aiinfra.spec.models import ServingDeployment

NAMESPACE = "aiinfra-serving"
MONITORING_NAMESPACE = "monitoring"
#: The Prometheus Operator creates this governing Service for every Prometheus in its namespace,
#: whatever the Helm release is called.
PROMETHEUS_URL = f"http://prometheus-operated.{MONITORING_NAMESPACE}.svc:9090"
SELECTOR_LABEL = "aiinfra.io/serving"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
LWS_EXCLUSIVE_TOPOLOGY = "leaderworkerset.sigs.k8s.io/exclusive-topology"
MASTER_PORT = 29500  # torch.distributed rendezvous of vLLM's multi-node multiprocessing executor
RAY_PORT = 6379
RUN_AS_UID = 1000
SHM_BYTES = 16 * 2**30  # /dev/shm: NCCL and vLLM's worker processes exchange through it
CACHE_BYTES = 50 * 2**30  # torch.compile, Triton, FlashInfer and Hugging Face caches
PROBE_PERIOD_S = 10
STAGING_HEADROOM = 1.1  # local NVMe emptyDir: checkpoint bytes x this
HOST_RESERVE = 0.9  # CPU and memory a serving pod may take of its GPUs' share of the node


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
class ServingSpec:
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
    lustre_mount: str
    checkpoint_bytes: float
    replicas: int
    min_replicas: int
    max_replicas: int
    fabric: FabricSummary | None = None

    @property
    def name(self) -> str:
        return self.dep.name

    @property
    def gpus_per_node(self) -> int:
        return self.group.gpus_per_node

    @property
    def nodes_per_replica(self) -> int:
        return max(1, math.ceil(self.plan.gpus_per_replica / self.gpus_per_node))

    @property
    def multi_node(self) -> bool:
        return self.plan.gpus_per_replica > self.gpus_per_node

    @property
    def gpus_per_pod(self) -> int:
        return self.gpus_per_node if self.multi_node else self.plan.gpus_per_replica

    @property
    def served_model_name(self) -> str:
        return self.dep.served_model_name or self.dep.name

    @property
    def api_key_secret(self) -> str:
        return self.dep.api_key_secret or f"{self.dep.name}-api-key"

    @property
    def kind(self) -> str:
        return "LeaderWorkerSet" if self.multi_node else "Deployment"

    @property
    def path(self) -> tuple:
        return ("serving", self.index)

    def gpus(self, replicas: int) -> int:
        """GPUs that ``replicas`` replicas hold (multi-node replicas hold whole nodes)."""
        return replicas * self.nodes_per_replica * self.gpus_per_pod if self.multi_node else replicas * self.gpus_per_pod

    @property
    def engine_dir(self) -> str:
        """TensorRT-LLM: where the build Job writes the engine, keyed by what shapes it."""
        key = json.dumps([self.dep.model, self.plan.tp, self.plan.pp, self.dep.quantization, self.dep.dtype,
                          self.dep.kv_cache_dtype, self.dep.max_model_len, self.plan.request.max_num_seqs,
                          self.image], sort_keys=True)
        return f"{self.lustre_mount}/engines/{self.dep.name}/{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _capacity_replicas(group: Group, plan: ServingPlan) -> int:
    per_node = group.gpus_per_node
    if plan.gpus_per_replica > per_node:
        return group.node_count // math.ceil(plan.gpus_per_replica / per_node)
    return group.node_count * (per_node // plan.gpus_per_replica)


def resolve(cluster: Cluster) -> list[ServingSpec]:
    """Every planned deployment, resolved once per cluster (validation and rendering share it)."""
    if "serving_specs" in cluster.cache:
        return cluster.cache["serving_specs"]
    bp = cluster.blueprint
    plans = {p.request.name: p for p in plan_cluster(cluster).serving}
    lustre = bp.storage.lustre
    mount = lustre.mountpoint.rstrip("/") if lustre else "/lustre"
    out: list[ServingSpec] = []
    for i, dep in enumerate(bp.serving):
        plan = plans.get(dep.name)
        group = cluster.groups.get(dep.node_group)
        if plan is None or group is None or not group.gpus_per_node:
            continue  # the planner already reported why
        engine = eng.engine(dep.engine)
        key = dep.image or dep.engine
        image = bp.versions.images.get(key, "")
        version = eng.image_version(image) if image else None
        lustre_weights = dep.weights_path or f"{mount}/models/{dep.model}"
        spec_ = dep.speculative
        draft_lustre = (spec_.weights_path or f"{mount}/models/{spec_.draft_model}") if spec_ else None
        local = dep.weights_source == "local-nvme"
        w = plan.weights_bytes
        if plan.request.draft is not None:
            w += weight_bytes(plan.request.draft, plan.request.dtype, plan.request.dtype).total
        capacity = _capacity_replicas(group, plan)
        replicas = max(1, min(plan.replicas, capacity))
        min_r = dep.min_replicas or replicas
        max_r = dep.max_replicas or max(min_r, replicas)
        out.append(ServingSpec(
            index=i, dep=dep, plan=plan, group=group, engine=engine, image=image, image_key=key, version=version,
            weights_dir="/models/target" if local else lustre_weights,
            lustre_weights=lustre_weights,
            draft_lustre_weights=draft_lustre,
            draft_dir=("/models/draft" if local else draft_lustre) if draft_lustre else None,
            lustre_mount=mount, checkpoint_bytes=w, replicas=min_r if dep.autoscaling != "none" else replicas,
            min_replicas=min_r, max_replicas=max_r, fabric=cluster.fabric,
        ))
    cluster.cache["serving_specs"] = out
    return out


# ---------------------------------------------------------------- engine arguments


def vllm_args(s: ServingSpec) -> list[Arg]:
    """``vllm serve`` arguments of the API server (the leader of a multi-node group)."""
    d, p = s.dep, s.plan
    cc = p.request.gpu.compute_capability
    marlin, plain = eng.VLLM_QUANTIZATION[d.quantization]
    quant = marlin if tuple(map(int, cc.split("."))) >= (8, 0) else plain
    args = [
        Arg("--model", s.weights_dir, ("weights_path",)),
        Arg("--served-model-name", s.served_model_name, ("served_model_name",)),
        Arg("--host", "0.0.0.0"),
        Arg("--port", str(s.engine.port)),
        Arg("--tensor-parallel-size", str(p.tp), ("tp",)),
        Arg("--pipeline-parallel-size", str(p.pp), ("pp",)),
        Arg("--dtype", eng.VLLM_DTYPE[d.dtype], ("dtype",)),
    ]
    if quant:
        args.append(Arg("--quantization", quant, ("quantization",)))
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


def vllm_worker_args(s: ServingSpec) -> list[Arg]:
    """Workers of a multi-node group with the multiprocessing executor: the same engine
    arguments, their own node rank, and no API server (``--headless``)."""
    out = [a for a in vllm_args(s) if a.flag != "--node-rank"]
    key = ("distributed_backend",)
    return out + [Arg("--node-rank", "$(LWS_WORKER_INDEX)", key), Arg("--headless", None, key)]


def trtllm_serve_args(s: ServingSpec) -> list[Arg]:
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


# ---------------------------------------------------------------- validation


def _err(s: ServingSpec, key: tuple, id: str, message: str, hint: str = "") -> Problem:
    return Problem(s.path + key, id, message, hint=hint)


def check_serving(cluster: Cluster) -> list[Problem]:
    """Problems a planned deployment still has: engine version and flags, multi-node layout,
    weights, node-group capacity, autoscaling."""
    specs = resolve(cluster)
    problems: list[Problem] = []
    for s in specs:
        problems += _check_engine(cluster, s)
        problems += _check_layout(s)
        problems += _check_weights(cluster, s)
        problems += _check_autoscaling(s)
    problems += _check_capacity(cluster, specs)
    return problems


def _check_engine(cluster: Cluster, s: ServingSpec) -> list[Problem]:
    e, d = s.engine, s.dep
    if not s.image:
        if d.image is not None:
            return []  # undefined-image is reported by the blueprint checks
        return [_err(s, ("engine",), "serving-engine-version",
                     f"no {e.title} image is pinned: versions.images has no '{s.image_key}' key",
                     f"add versions.images.{s.image_key}: <repository>:<version tag>, or set image:")]
    if s.version is None or not e.knows(s.version):
        known = f"{e.oldest} to {e.newest_minor}.x"
        what = "has no version tag" if s.version is None else f"is {e.title} {eng.format_version(s.version)}"
        return [_err(s, ("image",), "serving-engine-version",
                     f"image {s.image} {what}; the flag table of aiinfra.catalog.engines knows {known}",
                     f"pin a tagged {e.title} image in {known}, or add the version's flags to the catalog")]
    out = []
    version = s.version
    args = vllm_args(s) + (vllm_worker_args(s) if s.multi_node and d.distributed_backend == "mp" else []) \
        if e.name == "vllm" else trtllm_serve_args(s)
    lacking: dict[tuple, list[tuple[str, eng.FlagSpan | None]]] = {}
    seen: set[str] = set()
    for a in args:
        for name in (a.flag, a.feature):
            if name is None or name in seen:
                continue
            seen.add(name)
            lacking.setdefault(a.key or ("image",), []).extend(eng.missing(e, version, [name]))
    for key, flags in lacking.items():
        if not flags:
            continue
        names = ", ".join(f for f, _ in flags)
        spans = "; ".join(f"{f}: {span.describe()}" if span else f"{f}: unknown to the catalog" for f, span in flags)
        what = "feature" if all(f in e.features for f, _ in flags) else "flags" if len(flags) > 1 else "flag"
        out.append(_err(s, key, "serving-engine-flag",
                        f"{e.title} {eng.format_version(version)} (image {s.image}) lacks the {what} {names} "
                        f"this deployment needs ({spans})", _flag_hint(d, flags[0][0])))
    if e.name == "tensorrt-llm" and d.quantization not in eng.TRTLLM_QFORMAT:
        out.append(_err(s, ("quantization",), "serving-engine-flag",
                        f"the TensorRT-LLM engine build renders quantize.py formats {sorted(eng.TRTLLM_QFORMAT)}; "
                        f"{d.quantization} is not one of them", "use engine: vllm for GPTQ checkpoints"))
    if e.name == "tensorrt-llm" and d.speculative is not None:
        out.append(_err(s, ("speculative",), "serving-engine-flag",
                        "draft-model speculation is not rendered for TensorRT-LLM (its engine needs a "
                        "draft-target build)", "remove speculative, or use engine: vllm"))
    return out


def _flag_hint(d: ServingDeployment, flag: str) -> str:
    if flag in ("--nnodes", "--node-rank", "--master-addr", "--master-port", "--headless"):
        return "pin vLLM >= 0.11.1 for multi-node without Ray, or set distributed_backend: ray"
    if flag == "draft-model-speculation":
        return "pin a vLLM release before 0.11.0 (V0 engine) for a draft model, or remove speculative"
    if flag in ("--speculative-config", "--speculative-model", "--num-speculative-tokens"):
        return "pin a vLLM release that has this form of the speculative flags"
    return "pin an engine version that has it, or change the key that needs it"


def _check_layout(s: ServingSpec) -> list[Problem]:
    p, d, per_node = s.plan, s.dep, s.gpus_per_node
    out = []
    if s.multi_node:
        if p.tp > per_node:
            out.append(_err(s, ("tp",), "serving-layout",
                            f"TP {p.tp} spans nodes: a tensor-parallel group must stay inside one node's "
                            f"{per_node} NVLink-connected GPUs", f"use tp <= {per_node} and pp for the rest"))
        elif p.gpus_per_replica % per_node:
            out.append(_err(s, ("pp",), "serving-layout",
                            f"TP {p.tp} x PP {p.pp} = {p.gpus_per_replica} GPUs do not fill whole nodes of "
                            f"{per_node}: a multi-node replica takes whole nodes",
                            f"make TP x PP a multiple of {per_node}"))
        if d.engine == "tensorrt-llm":
            out.append(_err(s, ("engine",), "serving-layout",
                            "multi-node TensorRT-LLM (MPI across pods) is not rendered",
                            "use engine: vllm for replicas larger than a node"))
        elif d.speculative is not None:
            out.append(_err(s, ("speculative",), "serving-layout",
                            f"vLLM's draft-model speculation does not run with pipeline parallelism (PP {p.pp})",
                            "remove speculative or fit the replica in one node"))
        fabric = s.fabric
        if fabric is not None and s.nodes_per_replica > fabric.su_nodes:
            out.append(_err(s, ("pp",), "serving-layout",
                            f"a replica of {s.nodes_per_replica} nodes does not fit in a scalable unit of "
                            f"{fabric.su_nodes} nodes: its pipeline traffic would cross the spine",
                            f"use at most {fabric.su_nodes * s.gpus_per_node} GPUs per replica"))
    elif d.speculative is not None and p.pp > 1:
        out.append(_err(s, ("speculative",), "serving-layout",
                        f"vLLM's draft-model speculation does not run with pipeline parallelism (PP {p.pp})",
                        "use pp: 1"))
    return out


def _check_weights(cluster: Cluster, s: ServingSpec) -> list[Problem]:
    d = s.dep
    lustre = cluster.blueprint.storage.lustre
    out = []
    if lustre is None:
        return [_err(s, ("weights_path",), "serving-weights",
                     "serving reads checkpoints from Lustre but storage.lustre is not declared",
                     "declare storage.lustre")]
    for key, path in ((("weights_path",), s.lustre_weights),
                      (("speculative", "weights_path"), s.draft_lustre_weights)):
        if path is not None and not (path + "/").startswith(s.lustre_mount + "/"):
            out.append(_err(s, key, "serving-weights",
                            f"{path} is not below the Lustre mount point {s.lustre_mount}",
                            f"give a path below {s.lustre_mount}"))
    if d.weights_source == "local-nvme":
        if d.weights_manifest_sha256 is None:
            out.append(_err(s, ("weights_manifest_sha256",), "serving-weights",
                            "weights_source: local-nvme copies the checkpoint after checking it, but no "
                            "weights_manifest_sha256 is given",
                            "set it to the sha256 of the checkpoint's SHA256SUMS file"))
        nvme = s.group.node_type.local_nvme
        need = s.checkpoint_bytes * STAGING_HEADROOM
        if nvme is None:
            out.append(_err(s, ("weights_source",), "serving-weights",
                            f"node group '{s.group.name}' declares no local_nvme to stage the checkpoint on",
                            "use weights_source: lustre or declare node_types.<type>.local_nvme"))
        elif need > nvme:
            out.append(_err(s, ("weights_source",), "serving-weights",
                            f"the checkpoint needs {need / 1e9:.0f} GB of local NVMe, the node has "
                            f"{nvme / 1e9:.0f} GB", "use weights_source: lustre"))
    return out


def _check_autoscaling(s: ServingSpec) -> list[Problem]:
    d = s.dep
    out = []
    if d.autoscaling != "none" and s.engine.metrics_path is None:
        out.append(_err(s, ("autoscaling",), "serving-autoscaling",
                        f"{s.engine.title}'s server exposes no Prometheus metrics to scale on",
                        "set autoscaling: none"))
    if s.min_replicas > s.max_replicas:
        out.append(_err(s, ("max_replicas",), "serving-autoscaling",
                        f"max_replicas {s.max_replicas} is below min_replicas {s.min_replicas}",
                        f"set max_replicas >= {s.min_replicas}"))
    return out


def _check_capacity(cluster: Cluster, specs: list[ServingSpec]) -> list[Problem]:
    """Every replica a deployment may run (its maximum) holds GPUs of its node group; together
    they must fit, so a scale-up never waits for GPUs that another model holds."""
    out = []
    by_group: dict[str, list[ServingSpec]] = {}
    for s in specs:
        by_group.setdefault(s.group.name, []).append(s)
    for name, group_specs in by_group.items():
        group = group_specs[0].group
        total, first_over = 0, None
        for s in group_specs:
            total += s.gpus(s.max_replicas)
            if total > group.gpu_count and first_over is None:
                first_over = s
        if first_over is None:
            continue
        parts = ", ".join(f"{s.name} {s.max_replicas} x {s.gpus(1)}" for s in group_specs)
        s = first_over
        out.append(_err(s, ("max_replicas",) if s.dep.max_replicas else ("replicas",), "serving-over-capacity",
                        f"the deployments on node group '{name}' hold up to {total} GPUs at their maximum "
                        f"replicas ({parts}) but it has {group.gpu_count}",
                        f"free {total - group.gpu_count} GPUs (lower replicas or max_replicas) or add nodes"))
    return out


# ---------------------------------------------------------------- Kubernetes objects


def _labels(s: ServingSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": s.engine.name,
        "app.kubernetes.io/instance": s.name,
        "app.kubernetes.io/component": "serving",
        "app.kubernetes.io/managed-by": "aiinfra",
        SELECTOR_LABEL: s.name,
    }


def _meta(s: ServingSpec, name: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name or s.name, "namespace": NAMESPACE, "labels": _labels(s), **extra}


def _sus_of(cluster: Cluster, group: Group) -> list[int]:
    return sorted({cluster.hosts[h].su for h in group.hosts if cluster.hosts[h].su is not None})


def _node_selector(cluster: Cluster, s: ServingSpec) -> dict[str, str]:
    sel = {NODE_GROUP_LABEL: s.group.name}
    sus = _sus_of(cluster, s.group)
    if s.multi_node and len(sus) == 1:
        sel[SU_LABEL] = su_name(sus[0])  # the whole group lives in one SU: every pod of a replica with it
    return sel


def _resources(s: ServingSpec, rdma: bool) -> dict[str, Any]:
    nt = s.group.node_type
    share = s.gpus_per_pod / s.gpus_per_node
    cores = nt.cpu.sockets * nt.cpu.cores_per_socket * nt.cpu.threads_per_core
    cpu = max(1, int(cores * share * HOST_RESERVE))
    mem_gib = max(1, int(nt.memory * share * HOST_RESERVE / 2**30))
    limits: dict[str, Any] = {GPU_RESOURCE: s.gpus_per_pod, "memory": f"{mem_gib}Gi"}
    requests: dict[str, Any] = {GPU_RESOURCE: s.gpus_per_pod, "cpu": str(cpu), "memory": f"{mem_gib}Gi"}
    if rdma:
        limits[RDMA_SHARED_DEVICE_RESOURCE] = 1
        requests[RDMA_SHARED_DEVICE_RESOURCE] = 1
    if s.dep.weights_source == "local-nvme":
        requests["ephemeral-storage"] = f"{math.ceil(s.checkpoint_bytes * STAGING_HEADROOM / 2**30)}Gi"
    return {"limits": limits, "requests": requests}


def _env(s: ServingSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/cache"},
        {"name": "XDG_CACHE_HOME", "value": "/cache"},
        {"name": "HF_HOME", "value": "/cache/huggingface"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},  # weights come from Lustre, never from the Hub
        {"name": "TRITON_CACHE_DIR", "value": "/cache/triton"},
    ]
    if s.engine.name == "vllm":
        env += [{"name": "VLLM_CACHE_ROOT", "value": "/cache/vllm"},
                {"name": "VLLM_NO_USAGE_STATS", "value": "1"}, {"name": "DO_NOT_TRACK", "value": "1"}]
    if s.engine.api_key_env:
        env.append({"name": s.engine.api_key_env,
                    "valueFrom": {"secretKeyRef": {"name": s.api_key_secret, "key": "api-key"}}})
    return env


def _security_context() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}


def _probes(s: ServingSpec) -> dict[str, Any]:
    get = {"path": s.engine.health_path, "port": "http"}
    budget = eng.startup_budget_s(s.checkpoint_bytes, s.dep.weights_source)
    return {
        "startupProbe": {"httpGet": get, "periodSeconds": PROBE_PERIOD_S, "timeoutSeconds": 5,
                         "failureThreshold": math.ceil(budget / PROBE_PERIOD_S)},
        "readinessProbe": {"httpGet": get, "periodSeconds": PROBE_PERIOD_S, "timeoutSeconds": 5,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": get, "periodSeconds": 15, "timeoutSeconds": 10, "failureThreshold": 4},
    }


def _mounts(s: ServingSpec) -> list[dict[str, Any]]:
    m = [{"name": "lustre", "mountPath": s.lustre_mount, "readOnly": True},
         {"name": "dshm", "mountPath": "/dev/shm"},
         {"name": "cache", "mountPath": "/cache"},
         {"name": "tmp", "mountPath": "/tmp"}]
    if s.dep.weights_source == "local-nvme":
        m.append({"name": "local-weights", "mountPath": "/models", "readOnly": True})
    return m


def _volumes(s: ServingSpec) -> list[dict[str, Any]]:
    v: list[dict[str, Any]] = [
        {"name": "lustre", "persistentVolumeClaim": {"claimName": LUSTRE_PVC, "readOnly": True}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{SHM_BYTES // 2**30}Gi"}},
        {"name": "cache", "emptyDir": {"sizeLimit": f"{CACHE_BYTES // 2**30}Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "10Gi"}},
    ]
    if s.dep.weights_source == "local-nvme":
        size = math.ceil(s.checkpoint_bytes * STAGING_HEADROOM / 2**30)
        v.append({"name": "local-weights", "emptyDir": {"sizeLimit": f"{size}Gi"}})
    return v


def staging_script(s: ServingSpec) -> str:
    """Init container: copy the checkpoint(s) from Lustre to node-local NVMe, then trust the
    manifest only if its hash is the declared one and check every file against it."""
    lines = ["set -eu"]
    pairs = [(s.lustre_weights, "/models/target")]
    if s.draft_lustre_weights:
        pairs.append((s.draft_lustre_weights, "/models/draft"))
    for src, dst in pairs:
        lines.append(f"mkdir -p {dst} && cp -a {src}/. {dst}/")
    lines.append(f'echo "{s.dep.weights_manifest_sha256}  /models/target/SHA256SUMS" | sha256sum -c -')
    lines.append("cd /models/target && sha256sum --quiet -c SHA256SUMS")
    if s.draft_lustre_weights:
        lines.append("cd /models/draft && sha256sum --quiet -c SHA256SUMS")
    return "\n".join(lines) + "\n"


def _init_containers(s: ServingSpec) -> list[dict[str, Any]]:
    out = []
    if s.dep.weights_source == "local-nvme":
        out.append({
            "name": "stage-weights",
            "image": s.image,
            "command": ["/bin/sh", "-c", staging_script(s)],
            "securityContext": _security_context(),
            "resources": {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
            "volumeMounts": [{"name": "lustre", "mountPath": s.lustre_mount, "readOnly": True},
                             {"name": "local-weights", "mountPath": "/models"}],
        })
    if s.engine.name == "tensorrt-llm":
        out.append({
            "name": "wait-for-engine",
            "image": s.image,
            "command": ["/bin/sh", "-c",
                        f"until [ -f {s.engine_dir}/config.json ]; do echo waiting for the engine build; "
                        "sleep 30; done\n"],
            "securityContext": _security_context(),
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
            "volumeMounts": [{"name": "lustre", "mountPath": s.lustre_mount, "readOnly": True}],
        })
    return out


def _server_command(s: ServingSpec, role: str) -> tuple[list[str], list[str]]:
    """(command, args) of the server container: the API server, or a multi-node worker."""
    api = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    if s.engine.name == "tensorrt-llm":
        return ["trtllm-serve"], [s.engine_dir, *flatten(trtllm_serve_args(s))]
    if not s.multi_node or s.dep.distributed_backend == "mp":
        return api, flatten(vllm_args(s) if role == "leader" else vllm_worker_args(s))
    # Ray: one Ray cluster per group; the leader starts the head and the API server, workers join.
    if role == "leader":
        script = (f"ray start --head --port={RAY_PORT} --num-gpus={s.gpus_per_pod}\n"
                  f"exec {' '.join(api)} {' '.join(_quote(t) for t in flatten(vllm_args(s)))}\n")
    else:
        script = (f"exec ray start --address=$LWS_LEADER_ADDRESS:{RAY_PORT} --num-gpus={s.gpus_per_pod} "
                  "--block\n")
    return ["/bin/sh", "-c", script], []


def _quote(token: str) -> str:
    if token.replace("-", "").replace("_", "").replace(".", "").replace("/", "").isalnum():
        return token
    return "'" + token.replace("'", "'\\''") + "'"


def pod_spec(cluster: Cluster, s: ServingSpec, role: str = "leader") -> dict[str, Any]:
    """The pod of a single-node replica (role leader), or a leader or worker of a multi-node group."""
    command, args = _server_command(s, role)
    server: dict[str, Any] = {
        "name": "server",
        "image": s.image,
        "command": command,
        "env": _env(s),
        "resources": _resources(s, rdma=s.multi_node),
        "securityContext": _security_context(),
        "volumeMounts": _mounts(s),
    }
    if args:
        server["args"] = args
    if role == "leader":
        server["ports"] = [{"name": "http", "containerPort": s.engine.port, "protocol": "TCP"}]
        server.update(_probes(s))
    spec: dict[str, Any] = {
        "serviceAccountName": s.name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 60,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_UID, "runAsGroup": RUN_AS_UID,
                            "fsGroup": RUN_AS_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": _node_selector(cluster, s),
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [server],
        "volumes": _volumes(s),
    }
    init = _init_containers(s)
    if init:
        spec["initContainers"] = init
    return spec


def _pod_labels(s: ServingSpec) -> dict[str, str]:
    return _labels(s)


def workload(cluster: Cluster, s: ServingSpec) -> dict[str, Any]:
    if not s.multi_node:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(s),
            "spec": {
                "replicas": s.replicas,
                "selector": {"matchLabels": {SELECTOR_LABEL: s.name}},
                # GPUs are the scarce resource: replace one replica at a time instead of surging
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                "template": {"metadata": {"labels": _pod_labels(s)}, "spec": pod_spec(cluster, s)},
            },
        }
    meta = _meta(s)
    if len(_sus_of(cluster, s.group)) > 1:
        # a group spanning SUs: LWS places each replica's pods in one SU (and one replica per SU)
        meta["annotations"] = {LWS_EXCLUSIVE_TOPOLOGY: SU_LABEL}
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": meta,
        "spec": {
            "replicas": s.replicas,
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {"type": "RollingUpdate",
                                "rollingUpdateConfiguration": {"maxSurge": 0, "maxUnavailable": 1}},
            "leaderWorkerTemplate": {
                "size": s.nodes_per_replica,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {"metadata": {"labels": {**_pod_labels(s), "aiinfra.io/role": "leader"}},
                                   "spec": pod_spec(cluster, s, "leader")},
                "workerTemplate": {"metadata": {"labels": {**_pod_labels(s), "aiinfra.io/role": "worker"}},
                                   "spec": pod_spec(cluster, s, "worker")},
            },
        },
    }


def service_account(s: ServingSpec) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(s), "automountServiceAccountToken": False}


def service(s: ServingSpec) -> dict[str, Any]:
    selector = {SELECTOR_LABEL: s.name}
    if s.multi_node:
        selector[LWS_WORKER_INDEX_LABEL] = "0"  # only leaders serve the API
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(s),
        "spec": {"type": "ClusterIP", "selector": selector,
                 "ports": [{"name": "http", "port": s.engine.port, "targetPort": "http", "protocol": "TCP"}]},
    }


def disruption_budget(s: ServingSpec) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(s),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {SELECTOR_LABEL: s.name}}},
    }


def _ns(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def network_policy(s: ServingSpec) -> dict[str, Any]:
    port = [{"port": s.engine.port, "protocol": "TCP"}]
    own = {"podSelector": {"matchLabels": {SELECTOR_LABEL: s.name}}}
    ingress: list[dict[str, Any]] = []
    if s.dep.gateway_namespace:
        ingress.append({"from": [_ns(s.dep.gateway_namespace)], "ports": port})
    if s.engine.metrics_path:
        ingress.append({"from": [_ns(MONITORING_NAMESPACE)], "ports": port})
    dns = {**_ns("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    egress: list[dict[str, Any]] = [{"to": [dns], "ports": [{"port": 53, "protocol": "UDP"},
                                                             {"port": 53, "protocol": "TCP"}]}]
    if s.dep.egress_cidrs:
        egress.append({"to": [{"ipBlock": {"cidr": c}} for c in s.dep.egress_cidrs]})
    if s.multi_node:  # the pods of a group rendezvous with each other (NCCL data goes over RDMA)
        ingress.append({"from": [own]})
        egress.append({"to": [own]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(s),
        "spec": {"podSelector": own["podSelector"], "policyTypes": ["Ingress", "Egress"],
                 "ingress": ingress, "egress": egress},
    }


def _selector_expr(s: ServingSpec) -> str:
    return f'namespace="{NAMESPACE}",service="{s.name}"'


def service_monitor(s: ServingSpec) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(s),
        "spec": {"selector": {"matchLabels": {SELECTOR_LABEL: s.name}},
                 "namespaceSelector": {"matchNames": [NAMESPACE]},
                 "endpoints": [{"port": "http", "path": s.engine.metrics_path, "interval": "15s"}]},
    }


def kv_metric(s: ServingSpec) -> str:
    return eng.kv_cache_usage_metric(s.version or (0,))


def prometheus_rule(s: ServingSpec) -> dict[str, Any]:
    sel = _selector_expr(s)
    slo = s.dep.ttft_p95_slo_s
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(s),
        "spec": {"groups": [{
            "name": f"{s.name}.serving",
            "rules": [
                {
                    "alert": "ServingKvCacheNearlyFull",
                    "expr": f"max({kv_metric(s)}{{{sel}}}) > 0.95",
                    "for": "10m",
                    "labels": {"severity": "warning", "deployment": s.name},
                    "annotations": {
                        "summary": f"{s.name}: KV cache above 95 % for 10 minutes",
                        "description": "Requests queue or get preempted; add replicas (max_replicas) or lower "
                                       "max_model_len. Planned: "
                                       f"{s.plan.kv_cache_tokens} tokens of KV cache per replica.",
                    },
                },
                {
                    "alert": "ServingTimeToFirstTokenOverSlo",
                    "expr": (f"histogram_quantile(0.95, sum by (le) (rate({eng.TTFT_METRIC}_bucket{{{sel}}}[5m])))"
                             f" > {slo:g}"),
                    "for": "10m",
                    "labels": {"severity": "warning", "deployment": s.name},
                    "annotations": {
                        "summary": f"{s.name}: time to first token p95 above the {slo:g} s objective",
                        "description": "Prefill is queueing: check vllm:num_requests_waiting and scale out.",
                    },
                },
            ],
        }]},
    }


def _target_ref(s: ServingSpec) -> dict[str, str]:
    if s.multi_node:
        return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": s.name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": s.name}


def scaled_object(s: ServingSpec) -> dict[str, Any]:
    sel = _selector_expr(s)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(s),
        "spec": {
            "scaleTargetRef": _target_ref(s),
            "minReplicaCount": s.min_replicas,
            "maxReplicaCount": s.max_replicas,
            "pollingInterval": 30,
            "cooldownPeriod": 600,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                # a replica takes minutes to load: add fast, remove slowly
                "scaleDown": {"stabilizationWindowSeconds": 600,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]},
            }}},
            "triggers": [
                {"type": "prometheus", "name": "waiting-requests", "metricType": "AverageValue",
                 "metadata": {"serverAddress": PROMETHEUS_URL,
                              "query": f"sum({eng.WAITING_METRIC}{{{sel}}})",
                              "threshold": str(s.dep.scale_waiting_requests)}},
                {"type": "prometheus", "name": "kv-cache-usage", "metricType": "Value",
                 "metadata": {"serverAddress": PROMETHEUS_URL,
                              "query": f"avg({kv_metric(s)}{{{sel}}})",
                              "threshold": f"{s.dep.scale_kv_cache_usage:g}"}},
            ],
        },
    }


def adapter_metric_name(metric: str) -> str:
    """The custom-metrics name prometheus-adapter must expose for a vLLM metric (no ':')."""
    return metric.replace(":", "_")


def horizontal_autoscaler(s: ServingSpec) -> dict[str, Any]:
    milli = round(s.dep.scale_kv_cache_usage * 1000)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(s),
        "spec": {
            "scaleTargetRef": _target_ref(s),
            "minReplicas": s.min_replicas,
            "maxReplicas": s.max_replicas,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600,
                                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}},
            "metrics": [
                {"type": "Pods", "pods": {"metric": {"name": adapter_metric_name(eng.WAITING_METRIC)},
                                          "target": {"type": "AverageValue",
                                                     "averageValue": str(s.dep.scale_waiting_requests)}}},
                {"type": "Pods", "pods": {"metric": {"name": adapter_metric_name(kv_metric(s))},
                                          "target": {"type": "AverageValue", "averageValue": f"{milli}m"}}},
            ],
        },
    }


def build_job(cluster: Cluster, s: ServingSpec) -> dict[str, Any]:
    """TensorRT-LLM: quantize/convert with the plan's TP/PP, then trtllm-build, onto Lustre."""
    d, p = s.dep, s.plan
    qformat = eng.TRTLLM_QFORMAT.get(d.quantization) or "full_prec"
    ckpt = "/scratch/checkpoint"
    quantize = ["python3", "/app/tensorrt_llm/examples/quantization/quantize.py", "--model_dir", s.lustre_weights,
                "--output_dir", ckpt, "--dtype", eng.VLLM_DTYPE[d.dtype], "--qformat", qformat,
                "--tp_size", str(p.tp), "--pp_size", str(p.pp)]
    if d.kv_cache_dtype == "fp8":
        quantize += ["--kv_cache_dtype", "fp8"]
    build = ["trtllm-build", "--checkpoint_dir", ckpt, "--output_dir", s.engine_dir,
             "--max_batch_size", str(p.request.max_num_seqs), "--max_seq_len", str(d.max_model_len),
             "--max_num_tokens", str(p.request.max_num_batched_tokens), "--gemm_plugin", "auto",
             "--workers", str(min(p.gpus_per_replica, s.gpus_per_node))]
    # calibration loads the 16-bit model: enough GPUs to hold it, within one node
    bf16 = weight_bytes(p.request.model, d.dtype, d.dtype).total
    gpus = min(s.gpus_per_node, max(p.gpus_per_replica, math.ceil(bf16 / (0.8 * p.request.gpu.memory_bytes))))
    script = (f"set -eu\nif [ -f {s.engine_dir}/config.json ]; then echo engine exists; exit 0; fi\n"
              f"{' '.join(quantize)}\n{' '.join(build)}\n")
    spec = pod_spec(cluster, s)
    server = spec["containers"][0]
    container = {
        "name": "build",
        "image": s.image,
        "command": ["/bin/sh", "-c", script],
        "env": [e for e in server["env"] if "valueFrom" not in e],
        "resources": {"limits": {GPU_RESOURCE: gpus, "memory": server["resources"]["limits"]["memory"]},
                      "requests": {GPU_RESOURCE: gpus, "cpu": server["resources"]["requests"]["cpu"],
                                   "memory": server["resources"]["requests"]["memory"]}},
        "securityContext": _security_context(),
        "volumeMounts": [{"name": "lustre-rw", "mountPath": s.lustre_mount},
                         {"name": "scratch", "mountPath": "/scratch"},
                         {"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "cache", "mountPath": "/cache"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes = [{"name": "lustre-rw", "persistentVolumeClaim": {"claimName": LUSTRE_PVC}},
               {"name": "scratch", "emptyDir": {"sizeLimit": f"{math.ceil(bf16 * 1.2 / 2**30)}Gi"}},
               *[v for v in spec["volumes"] if v["name"] in ("dshm", "cache", "tmp")]]
    pod = {k: v for k, v in spec.items() if k not in ("containers", "volumes", "initContainers")}
    pod.update({"restartPolicy": "Never", "containers": [container], "volumes": volumes})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(s, f"{s.name}-engine-build"),
        "spec": {"backoffLimit": 1, "ttlSecondsAfterFinished": 86400,
                 "template": {"metadata": {"labels": {**_pod_labels(s), "aiinfra.io/role": "engine-build"}},
                              "spec": pod}},
    }


def deployment_objects(cluster: Cluster, s: ServingSpec) -> dict[str, list[dict[str, Any]]]:
    """File name -> objects of one deployment."""
    files: dict[str, list[dict[str, Any]]] = {
        "serviceaccount.yaml": [service_account(s)],
        f"{s.kind.lower()}.yaml": [workload(cluster, s)],
        "service.yaml": [service(s)],
        "poddisruptionbudget.yaml": [disruption_budget(s)],
        "networkpolicy.yaml": [network_policy(s)],
    }
    if s.engine.name == "tensorrt-llm":
        files["engine-build-job.yaml"] = [build_job(cluster, s)]
    if s.engine.metrics_path:
        files["servicemonitor.yaml"] = [service_monitor(s)]
        files["prometheusrule.yaml"] = [prometheus_rule(s)]
    if s.dep.autoscaling == "keda":
        files["scaledobject.yaml"] = [scaled_object(s)]
    elif s.dep.autoscaling == "hpa":
        files["horizontalpodautoscaler.yaml"] = [horizontal_autoscaler(s)]
    return files


def _header(cluster: Cluster, s: ServingSpec) -> str:
    p = s.plan
    return (f"# Serving deployment '{s.name}' of '{cluster.env}', rendered by aiinfra from {cluster.source}. "
            "Do not edit.\n"
            f"# Plan: {p.request.model.name} {p.request.format.name} on {p.request.gpu.name}, TP {p.tp} x PP {p.pp}, "
            f"{p.weights_per_gpu_bytes / 1e9:.1f} GB weights and {p.kv_cache_per_gpu_bytes / 2**30:.1f} GiB KV cache "
            f"per GPU, {p.max_concurrent_sequences} sequences of {s.dep.max_model_len} tokens per replica, "
            f"{s.replicas} replicas ({s.min_replicas}-{s.max_replicas}).\n")


def serving_k8s_specs(cluster: Cluster) -> list[ServingSpec]:
    """The deployments rendered for Kubernetes (their node group is scheduled by Kubernetes)."""
    return [s for s in resolve(cluster) if s.group.scheduler == "kubernetes"]


@renderer("k8s-serving", "vLLM / TensorRT-LLM serving: workloads, Service, policies, monitoring, autoscaling")
def render_serving(cluster: Cluster) -> Artifacts:
    if not uses_kubernetes(cluster):
        return {}
    specs = serving_k8s_specs(cluster)
    if not specs:
        return {}
    out: Artifacts = {}
    for s in specs:
        files = {f: _header(cluster, s) + dump_yaml_documents(objs)
                 for f, objs in deployment_objects(cluster, s).items()}
        out.update(component(f"serving/{s.name}", files, cluster.env))
    out["k8s/serving/kustomization.yaml"] = dump_yaml({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(s.name for s in specs),
    })
    return out


def objects(cluster: Cluster) -> dict[str, list[dict[str, Any]]]:
    """Deployment name -> its Kubernetes objects (what the files hold), for Pulumi and tests."""
    return {s.name: [o for objs in deployment_objects(cluster, s).values() for o in objs]
            for s in serving_k8s_specs(cluster)}
