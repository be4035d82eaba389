"""The pods of a serving deployment: labels (and the Kueue queue of its workloads), the name of its
client Service, placement, resources, environment (NCCL for multi-node replicas), probes, volumes,
the checkpoint staging init container and the server command line."""

from __future__ import annotations

import math
from typing import Any

from aiinfra.catalog import engines as eng
from aiinfra.catalog.k8s_resources import (
    GPU_RESOURCE,
    NODE_GROUP_LABEL,
    PARALLEL_FS_PVC,
    RDMA_SHARED_DEVICE_RESOURCE,
    SU_LABEL,
    local_queue,
)
from aiinfra.plan.deployments import (
    STAGING_HEADROOM,
    ResolvedDeployment,
    trtllm_serve_argv,
    vllm_serve_argv,
)
from aiinfra.render.jobs import KUEUE_QUEUE_LABEL
from aiinfra.render.templates import shell_quote
from aiinfra.spec.cluster import Cluster, Group
from aiinfra.spec.fabric import su_name

NAMESPACE = "aiinfra-serving"
SELECTOR_LABEL = "aiinfra.io/serving"
RAY_PORT = 6379
RUN_AS_UID = 1000
SHM_BYTES = 16 * 2**30  # /dev/shm: NCCL and vLLM's worker processes exchange through it
CACHE_BYTES = 50 * 2**30  # torch.compile, Triton, FlashInfer and Hugging Face caches
PROBE_PERIOD_S = 10
HOST_RESERVE = 0.9  # CPU and memory a serving pod may take of its GPUs' share of the node
#: vLLM's CLI entry point (``vllm = vllm.entrypoints.cli.main:main`` in pyproject.toml of 0.8.5 and
#: 0.12.0): ``vllm serve MODEL``. Only it runs a headless multi-node worker (``--headless``:
#: vllm/entrypoints/cli/serve.py ``run_headless``); ``python3 -m vllm.entrypoints.openai.api_server``
#: starts a full API server whatever the flags.
VLLM_SERVE = ("vllm", "serve")


def labels(s: ResolvedDeployment) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": s.engine.name,
        "app.kubernetes.io/instance": s.name,
        "app.kubernetes.io/component": "serving",
        "app.kubernetes.io/managed-by": "aiinfra",
        SELECTOR_LABEL: s.name,
    }


def meta(s: ResolvedDeployment, name: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name or s.name, "namespace": NAMESPACE, "labels": labels(s), **extra}


def workload_meta(s: ResolvedDeployment, name: str | None = None) -> dict[str, Any]:
    """Metadata of a workload that holds GPUs (Deployment, LeaderWorkerSet, the engine build Job): it
    names the namespace's Kueue LocalQueue, so the serving ClusterQueue's quota admits its pods (Kueue's
    deployment, leaderworkerset and batch/job integrations read the label from the object's metadata)."""
    m = meta(s, name)
    m["labels"] = {**m["labels"], KUEUE_QUEUE_LABEL: local_queue(NAMESPACE)}
    return m


def sus_of(cluster: Cluster, group: Group) -> list[int]:
    return sorted({cluster.hosts[h].su for h in group.hosts if cluster.hosts[h].su is not None})


def _node_selector(cluster: Cluster, s: ResolvedDeployment) -> dict[str, str]:
    sel = {NODE_GROUP_LABEL: s.group.name}
    sus = sus_of(cluster, s.group)
    if s.multi_node and len(sus) == 1:
        sel[SU_LABEL] = su_name(sus[0])  # the whole group lives in one SU: every pod of a replica with it
    return sel


def _resources(s: ResolvedDeployment, rdma: bool) -> dict[str, Any]:
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


def _env(s: ResolvedDeployment) -> list[dict[str, Any]]:
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
    env += [{"name": k, "value": v} for k, v in sorted(s.nccl.items())]  # multi-node replicas: NCCL over the rails
    if s.engine.api_key_env:
        env.append({"name": s.engine.api_key_env,
                    "valueFrom": {"secretKeyRef": {"name": s.api_key_secret, "key": "api-key"}}})
    return env


def security_context() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}


def _probes(s: ResolvedDeployment) -> dict[str, Any]:
    get = {"path": s.engine.health_path, "port": "http"}
    budget = eng.startup_budget_s(s.checkpoint_bytes, s.dep.weights_source)
    return {
        "startupProbe": {"httpGet": get, "periodSeconds": PROBE_PERIOD_S, "timeoutSeconds": 5,
                         "failureThreshold": math.ceil(budget / PROBE_PERIOD_S)},
        "readinessProbe": {"httpGet": get, "periodSeconds": PROBE_PERIOD_S, "timeoutSeconds": 5,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": get, "periodSeconds": 15, "timeoutSeconds": 10, "failureThreshold": 4},
    }


def _claim(s: ResolvedDeployment) -> str:
    """The claim of the parallel file system (Lustre or GPFS), also the pods' name of its volume."""
    return PARALLEL_FS_PVC[s.parallel_fs]


def _mounts(s: ResolvedDeployment) -> list[dict[str, Any]]:
    m = [{"name": _claim(s), "mountPath": s.lustre_mount, "readOnly": True},
         {"name": "dshm", "mountPath": "/dev/shm"},
         {"name": "cache", "mountPath": "/cache"},
         {"name": "tmp", "mountPath": "/tmp"}]
    if s.dep.weights_source == "local-nvme":
        m.append({"name": "local-weights", "mountPath": "/models", "readOnly": True})
    return m


def _volumes(s: ResolvedDeployment) -> list[dict[str, Any]]:
    v: list[dict[str, Any]] = [
        {"name": _claim(s), "persistentVolumeClaim": {"claimName": _claim(s), "readOnly": True}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{SHM_BYTES // 2**30}Gi"}},
        {"name": "cache", "emptyDir": {"sizeLimit": f"{CACHE_BYTES // 2**30}Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "10Gi"}},
    ]
    if s.dep.weights_source == "local-nvme":
        size = math.ceil(s.checkpoint_bytes * STAGING_HEADROOM / 2**30)
        v.append({"name": "local-weights", "emptyDir": {"sizeLimit": f"{size}Gi"}})
    return v


def staging_script(s: ResolvedDeployment) -> str:
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


def _init_containers(s: ResolvedDeployment) -> list[dict[str, Any]]:
    out = []
    if s.dep.weights_source == "local-nvme":
        out.append({
            "name": "stage-weights",
            "image": s.image,
            "command": ["/bin/sh", "-c", staging_script(s)],
            "securityContext": security_context(),
            "resources": {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
            "volumeMounts": [{"name": _claim(s), "mountPath": s.lustre_mount, "readOnly": True},
                             {"name": "local-weights", "mountPath": "/models"}],
        })
    if s.engine.name == "tensorrt-llm":
        out.append({
            "name": "wait-for-engine",
            "image": s.image,
            "command": ["/bin/sh", "-c",
                        f"until [ -f {s.engine_dir}/config.json ]; do echo waiting for the engine build; "
                        "sleep 30; done\n"],
            "securityContext": security_context(),
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
            "volumeMounts": [{"name": _claim(s), "mountPath": s.lustre_mount, "readOnly": True}],
        })
    return out


def _server_command(s: ResolvedDeployment, role: str) -> tuple[list[str], list[str]]:
    """(command, args) of the server container: the API server, or a multi-node worker."""
    api = list(VLLM_SERVE)
    if s.engine.name == "tensorrt-llm":
        return ["trtllm-serve"], trtllm_serve_argv(s)
    if not s.multi_node or s.dep.distributed_backend == "mp":
        return api, vllm_serve_argv(s, role)
    # Ray: one Ray cluster per group; the leader starts the head and the API server, workers join.
    if role == "leader":
        script = (f"ray start --head --port={RAY_PORT} --num-gpus={s.gpus_per_pod}\n"
                  f"exec {' '.join(api)} {' '.join(shell_quote(t) for t in vllm_serve_argv(s))}\n")
    else:
        script = (f"exec ray start --address=$LWS_LEADER_ADDRESS:{RAY_PORT} --num-gpus={s.gpus_per_pod} "
                  "--block\n")
    return ["/bin/sh", "-c", script], []


def pod_spec(cluster: Cluster, s: ResolvedDeployment, role: str = "leader") -> dict[str, Any]:
    """The pod of a single-node replica (role leader), or a leader or worker of a multi-node group."""
    command, args = _server_command(s, role)
    server: dict[str, Any] = {
        "name": "server",
        "image": s.image,
        "command": command,
        "env": _env(s),
        "resources": _resources(s, rdma=s.multi_node),
        "securityContext": security_context(),
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


def pod_labels(s: ResolvedDeployment) -> dict[str, str]:
    return labels(s)

