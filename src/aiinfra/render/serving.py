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

import math
from typing import Any

from aiinfra.catalog import engines as eng
from aiinfra.catalog.k8s_resources import (
    GPU_RESOURCE,
    LUSTRE_PVC,
    NODE_GROUP_LABEL,
    RDMA_SHARED_DEVICE_RESOURCE,
    SU_LABEL,
)
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.deployments import (
    STAGING_HEADROOM,
    ResolvedDeployment,
    flatten,
    trtllm_serve_args,
    vllm_args,
    vllm_worker_args,
)
from aiinfra.plan.serving import weight_bytes
from aiinfra.render import Artifacts, renderer
from aiinfra.render.kubernetes import component, uses_kubernetes
from aiinfra.render.templates import dump_yaml, dump_yaml_documents, shell_quote
from aiinfra.spec.cluster import Cluster, Group
from aiinfra.spec.fabric import su_name

NAMESPACE = "aiinfra-serving"
MONITORING_NAMESPACE = "monitoring"
#: The Prometheus Operator creates this governing Service for every Prometheus in its namespace,
#: whatever the Helm release is called.
PROMETHEUS_URL = f"http://prometheus-operated.{MONITORING_NAMESPACE}.svc:9090"
SELECTOR_LABEL = "aiinfra.io/serving"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
LWS_EXCLUSIVE_TOPOLOGY = "leaderworkerset.sigs.k8s.io/exclusive-topology"
RAY_PORT = 6379
RUN_AS_UID = 1000
SHM_BYTES = 16 * 2**30  # /dev/shm: NCCL and vLLM's worker processes exchange through it
CACHE_BYTES = 50 * 2**30  # torch.compile, Triton, FlashInfer and Hugging Face caches
PROBE_PERIOD_S = 10
HOST_RESERVE = 0.9  # CPU and memory a serving pod may take of its GPUs' share of the node


# ---------------------------------------------------------------- Kubernetes objects


def _labels(s: ResolvedDeployment) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": s.engine.name,
        "app.kubernetes.io/instance": s.name,
        "app.kubernetes.io/component": "serving",
        "app.kubernetes.io/managed-by": "aiinfra",
        SELECTOR_LABEL: s.name,
    }


def _meta(s: ResolvedDeployment, name: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name or s.name, "namespace": NAMESPACE, "labels": _labels(s), **extra}


def _sus_of(cluster: Cluster, group: Group) -> list[int]:
    return sorted({cluster.hosts[h].su for h in group.hosts if cluster.hosts[h].su is not None})


def _node_selector(cluster: Cluster, s: ResolvedDeployment) -> dict[str, str]:
    sel = {NODE_GROUP_LABEL: s.group.name}
    sus = _sus_of(cluster, s.group)
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


def _security_context() -> dict[str, Any]:
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


def _mounts(s: ResolvedDeployment) -> list[dict[str, Any]]:
    m = [{"name": "lustre", "mountPath": s.lustre_mount, "readOnly": True},
         {"name": "dshm", "mountPath": "/dev/shm"},
         {"name": "cache", "mountPath": "/cache"},
         {"name": "tmp", "mountPath": "/tmp"}]
    if s.dep.weights_source == "local-nvme":
        m.append({"name": "local-weights", "mountPath": "/models", "readOnly": True})
    return m


def _volumes(s: ResolvedDeployment) -> list[dict[str, Any]]:
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


def _server_command(s: ResolvedDeployment, role: str) -> tuple[list[str], list[str]]:
    """(command, args) of the server container: the API server, or a multi-node worker."""
    api = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    if s.engine.name == "tensorrt-llm":
        return ["trtllm-serve"], [s.engine_dir, *flatten(trtllm_serve_args(s))]
    if not s.multi_node or s.dep.distributed_backend == "mp":
        return api, flatten(vllm_args(s) if role == "leader" else vllm_worker_args(s))
    # Ray: one Ray cluster per group; the leader starts the head and the API server, workers join.
    if role == "leader":
        script = (f"ray start --head --port={RAY_PORT} --num-gpus={s.gpus_per_pod}\n"
                  f"exec {' '.join(api)} {' '.join(shell_quote(t) for t in flatten(vllm_args(s)))}\n")
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


def _pod_labels(s: ResolvedDeployment) -> dict[str, str]:
    return _labels(s)


def workload(cluster: Cluster, s: ResolvedDeployment) -> dict[str, Any]:
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


def service_account(s: ResolvedDeployment) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(s), "automountServiceAccountToken": False}


def service(s: ResolvedDeployment) -> dict[str, Any]:
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


def disruption_budget(s: ResolvedDeployment) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(s),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {SELECTOR_LABEL: s.name}}},
    }


def _ns(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def network_policy(s: ResolvedDeployment) -> dict[str, Any]:
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


def _selector_expr(s: ResolvedDeployment) -> str:
    return f'namespace="{NAMESPACE}",service="{s.name}"'


def service_monitor(s: ResolvedDeployment) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(s),
        "spec": {"selector": {"matchLabels": {SELECTOR_LABEL: s.name}},
                 "namespaceSelector": {"matchNames": [NAMESPACE]},
                 "endpoints": [{"port": "http", "path": s.engine.metrics_path, "interval": "15s"}]},
    }


def kv_metric(s: ResolvedDeployment) -> str:
    return eng.kv_cache_usage_metric(s.version or (0,))


def prometheus_rule(s: ResolvedDeployment) -> dict[str, Any]:
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


def _target_ref(s: ResolvedDeployment) -> dict[str, str]:
    if s.multi_node:
        return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": s.name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": s.name}


def scaled_object(s: ResolvedDeployment) -> dict[str, Any]:
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


def horizontal_autoscaler(s: ResolvedDeployment) -> dict[str, Any]:
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


def build_job(cluster: Cluster, s: ResolvedDeployment) -> dict[str, Any]:
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


def deployment_objects(cluster: Cluster, s: ResolvedDeployment) -> dict[str, list[dict[str, Any]]]:
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


def _header(cluster: Cluster, s: ResolvedDeployment) -> str:
    p = s.plan
    return (f"# Serving deployment '{s.name}' of '{cluster.env}', rendered by aiinfra from {cluster.source}. "
            "Do not edit.\n"
            f"# Plan: {p.request.model.name} {p.request.format.name} on {p.request.gpu.name}, TP {p.tp} x PP {p.pp}, "
            f"{p.weights_per_gpu_bytes / 1e9:.1f} GB weights and {p.kv_cache_per_gpu_bytes / 2**30:.1f} GiB KV cache "
            f"per GPU, {p.max_concurrent_sequences} sequences of {s.dep.max_model_len} tokens per replica, "
            f"{s.replicas} replicas ({s.min_replicas}-{s.max_replicas}).\n")


def kubernetes_deployments(plan: ClusterPlan) -> list[ResolvedDeployment]:
    """The deployments rendered for Kubernetes (their node group is scheduled by Kubernetes)."""
    return [s for s in plan.deployments if s.group.scheduler == "kubernetes"]


@renderer("k8s-serving", "vLLM / TensorRT-LLM serving: workloads, Service, policies, monitoring, autoscaling")
def render_serving(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    if not uses_kubernetes(cluster):
        return {}
    specs = kubernetes_deployments(plan)
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


def objects(cluster: Cluster, plan: ClusterPlan) -> dict[str, list[dict[str, Any]]]:
    """Deployment name -> its Kubernetes objects (what the files hold), for Pulumi and tests."""
    return {s.name: [o for objs in deployment_objects(cluster, s).values() for o in objs]
            for s in kubernetes_deployments(plan)}
