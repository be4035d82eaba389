"""LLM serving on Kubernetes: one kustomize folder per deployment under ``k8s/serving/<name>/``.

Every deployment comes resolved from the plan (:mod:`aiinfra.plan.deployments`): TP, PP, memory
budget, sequences, replicas, paths, engine arguments, NCCL environment; its engine flags were checked
against the pinned image's version by :mod:`aiinfra.checks.serving`. The pods are built in
:mod:`aiinfra.render.serving_pods`, monitoring and autoscaling in :mod:`aiinfra.render.serving_scaling`.

- vLLM, one node per replica (TP x PP <= GPUs per node): a Deployment.
- vLLM, several nodes per replica: a LeaderWorkerSet (leaderworkerset.x-k8s.io/v1); the leader
  runs the API server, the workers join it, by vLLM's multiprocessing executor (``--nnodes``) or
  by a Ray cluster per group (``distributed_backend: ray``). Each pod takes a whole node.
- TensorRT-LLM: a Job builds the engine onto Lustre (quantize.py with TP/PP/quantization from the
  plan, calibrating on the blueprint's local dataset, then trtllm-build), a Deployment runs
  trtllm-serve on it.
- The workloads name the serving namespace's Kueue LocalQueue (``kueue.x-k8s.io/queue-name``).
- Around each: ServiceAccount (no token), Service (ClusterIP, ``<name>-api``: an LWS owns the
  Service of its own name), PodDisruptionBudget,
  NetworkPolicy (gateway namespace in, DNS and declared CIDRs out), and for vLLM a ServiceMonitor,
  PrometheusRule alerts and the declared autoscaler (KEDA ScaledObject or HPA).
"""

from __future__ import annotations

import math
from typing import Any

from aiinfra.catalog import engines as eng
from aiinfra.catalog.k8s_resources import (
    GPU_RESOURCE,
    PARALLEL_FS_PVC,
    SU_LABEL,
)
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.deployments import (
    ResolvedDeployment,
)
from aiinfra.plan.serving import weight_bytes
from aiinfra.render import Artifacts, renderer
from aiinfra.render.kubernetes import component, uses_kubernetes
from aiinfra.render.serving_pods import (
    SELECTOR_LABEL,
    meta,
    pod_labels,
    pod_spec,
    security_context,
    sus_of,
    workload_meta,
)
from aiinfra.render.serving_scaling import (
    MONITORING_NAMESPACE,
    horizontal_autoscaler,
    prometheus_rule,
    scaled_object,
    service_monitor,
)
from aiinfra.render.templates import dump_yaml, dump_yaml_documents
from aiinfra.spec.cluster import Cluster

LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
LWS_EXCLUSIVE_TOPOLOGY = "leaderworkerset.sigs.k8s.io/exclusive-topology"


def workload(cluster: Cluster, s: ResolvedDeployment) -> dict[str, Any]:
    if not s.multi_node:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": workload_meta(s),
            "spec": {
                "replicas": s.replicas,
                "selector": {"matchLabels": {SELECTOR_LABEL: s.name}},
                # GPUs are the scarce resource: replace one replica at a time instead of surging
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                "template": {"metadata": {"labels": pod_labels(s)}, "spec": pod_spec(cluster, s)},
            },
        }
    lws_meta = workload_meta(s)
    if len(sus_of(cluster, s.group)) > 1:
        # a group spanning SUs: LWS places each replica's pods in one SU (and one replica per SU)
        lws_meta["annotations"] = {LWS_EXCLUSIVE_TOPOLOGY: SU_LABEL}
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": lws_meta,
        "spec": {
            "replicas": s.replicas,
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {"type": "RollingUpdate",
                                "rollingUpdateConfiguration": {"maxSurge": 0, "maxUnavailable": 1}},
            "leaderWorkerTemplate": {
                "size": s.nodes_per_replica,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {"metadata": {"labels": {**pod_labels(s), "aiinfra.io/role": "leader"}},
                                   "spec": pod_spec(cluster, s, "leader")},
                "workerTemplate": {"metadata": {"labels": {**pod_labels(s), "aiinfra.io/role": "worker"}},
                                   "spec": pod_spec(cluster, s, "worker")},
            },
        },
    }


def service_account(s: ResolvedDeployment) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(s), "automountServiceAccountToken": False}


def service(s: ResolvedDeployment) -> dict[str, Any]:
    selector = {SELECTOR_LABEL: s.name}
    if s.multi_node:
        selector[LWS_WORKER_INDEX_LABEL] = "0"  # only leaders serve the API
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(s, s.service_name),
        "spec": {"type": "ClusterIP", "selector": selector,
                 "ports": [{"name": "http", "port": s.engine.port, "targetPort": "http", "protocol": "TCP"}]},
    }


def disruption_budget(s: ResolvedDeployment) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(s),
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
        "metadata": meta(s),
        "spec": {"podSelector": own["podSelector"], "policyTypes": ["Ingress", "Egress"],
                 "ingress": ingress, "egress": egress},
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
    if s.calibrates and d.calibration_dataset:  # the Job is offline (HF_HUB_OFFLINE): never the Hub default
        quantize += [eng.TRTLLM_CALIB_FLAG, d.calibration_dataset]
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
    claim = PARALLEL_FS_PVC[s.parallel_fs]  # the parallel file system (Lustre or GPFS), writable here
    container = {
        "name": "build",
        "image": s.image,
        "command": ["/bin/sh", "-c", script],
        "env": [e for e in server["env"] if "valueFrom" not in e],
        "resources": {"limits": {GPU_RESOURCE: gpus, "memory": server["resources"]["limits"]["memory"]},
                      "requests": {GPU_RESOURCE: gpus, "cpu": server["resources"]["requests"]["cpu"],
                                   "memory": server["resources"]["requests"]["memory"]}},
        "securityContext": security_context(),
        "volumeMounts": [{"name": f"{claim}-rw", "mountPath": s.lustre_mount},
                         {"name": "scratch", "mountPath": "/scratch"},
                         {"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "cache", "mountPath": "/cache"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes = [{"name": f"{claim}-rw", "persistentVolumeClaim": {"claimName": claim}},
               {"name": "scratch", "emptyDir": {"sizeLimit": f"{math.ceil(bf16 * 1.2 / 2**30)}Gi"}},
               *[v for v in spec["volumes"] if v["name"] in ("dshm", "cache", "tmp")]]
    pod = {k: v for k, v in spec.items() if k not in ("containers", "volumes", "initContainers")}
    pod.update({"restartPolicy": "Never", "containers": [container], "volumes": volumes})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": workload_meta(s, f"{s.name}-engine-build"),
        "spec": {"backoffLimit": 1, "ttlSecondsAfterFinished": 86400,
                 "template": {"metadata": {"labels": {**pod_labels(s), "aiinfra.io/role": "engine-build"}},
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
