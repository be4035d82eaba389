"""The node health check on Kubernetes GPU nodes: ``manifests/<env>/k8s/node-health/``.

One health signal for both schedulers: the script slurmd runs as its HealthCheckProgram
(``roles/slurm/files/aiinfra-nodecheck``, read here at render time: one copy) runs on every
Kubernetes GPU node in a DaemonSet with ``--kubernetes``. Where Slurm drains a failing node with
the reason ``aiinfra-nodecheck: ...``, the check sets the node condition
:data:`~aiinfra.catalog.k8s_resources.NODE_HEALTH_CONDITION` to False, taints the node
``aiinfra.io/node-state=drain:NoSchedule`` (the taint of the blueprint's ``nodes:`` section) and
annotates it with the same reason; it lifts its own drain when the node is healthy again.

- ``rbac.yaml``       ServiceAccount, ClusterRole (nodes get/patch, nodes/status patch), binding.
- ``configmap.yaml``  the script, ``nodecheck.json`` (the Slurm file's entries for the Kubernetes
                      GPU groups, plus the condition, taint and annotation names of the catalog) and
                      the probes of a pod: the GPUs the dcgm role's probe last called healthy
                      (``/run/aiinfra/gpu-health.json``, what Slurm's check counts through
                      ``aiinfra-gpu-health slurm-gpus``), else the driver's device files
                      (``nvidia<N>``: the pod requests no GPU, so it has no nvidia-smi); the
                      host's ``/sys`` (rail HCA ports) and PID 1's mount table (Lustre).
- ``daemonset.yaml``  the check on the GPU node groups, every ``slurm.health_check_interval_s``.

The pod reads host paths, so it runs in ``kube-system`` (Pod Security privileged by default),
as nobody, read-only, without capabilities.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from aiinfra.catalog.k8s_resources import (
    NODE_GROUP_LABEL,
    NODE_HEALTH_CONDITION,
    NODE_HEALTH_DRAIN_STATE,
    NODE_HEALTH_NAMESPACE,
    NODE_STATE_EFFECT,
    NODE_STATE_KEY,
    NODE_STATE_REASON_ANNOTATION,
    NODECHECK_IMAGE_KEY,
)
from aiinfra.paths import project_root, templates_dir
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.mirror import site_image
from aiinfra.render import Artifacts, renderer
from aiinfra.render.jobs import dump_objects
from aiinfra.render.k8s_topology import GPU_TAINT, kubernetes_groups
from aiinfra.render.kubernetes import component, uses_kubernetes
from aiinfra.render.slurm import node_check_group
from aiinfra.spec.cluster import Cluster, Group
from aiinfra.spec.models import Slurm

COMPONENT = "node-health"
NAME = "aiinfra-nodecheck"
SCRIPT = Path("roles") / "slurm" / "files" / NAME
MOUNT_DIR = f"/etc/{NAME}"
CONFIG_FILE = "nodecheck.json"
PROBES_FILE = "nodecheck-probes.json"
CONFIG_HASH_ANNOTATION = "aiinfra.io/script-sha256"
MANAGED = {"app.kubernetes.io/managed-by": "aiinfra", "app.kubernetes.io/name": NAME}
NOBODY = 65534

#: Where the driver's device files are: the host's /dev when Ansible installs the driver, the GPU
#: Operator's driver root when its container does (mounted there after the pod may have started:
#: HostToContainer propagation lets that mount in).
DEVICE_DIRS = {"host": ("/dev", "/host/dev", "/host/dev"),
               "operator": ("/run/nvidia", "/host/run/nvidia", "/host/run/nvidia/driver/dev")}
#: The dcgm role's GPU health state (aiinfra-gpu-health's ``state_dir``, a timer refreshes it):
#: the GPUs DCGM calls healthy, the count Slurm's check gets from ``aiinfra-gpu-health slurm-gpus``.
#: Older than this, or absent (no dcgm role), the device files are counted instead.
GPU_HEALTH_DIR = "/run/aiinfra"
GPU_HEALTH_FILE = "gpu-health.json"
GPU_HEALTH_MAX_AGE_S = 600


@dataclass(frozen=True)
class HostPath:
    volume: str
    host: str
    inside: str
    kind: str  # hostPath type
    propagation: str | None = None


def host_paths(cluster: Cluster) -> list[HostPath]:
    """How the check looks at the host from its pod: ``/sys`` whole (``/sys/class/infiniband/*`` are
    links into ``../../devices``), the driver's device files, PID 1's mount table (the host's
    mounts, not the pod's), the dcgm role's GPU health state."""
    host, inside, _ = DEVICE_DIRS[_gpu_driver(cluster)]
    devices = (HostPath("host-dev", host, inside, "Directory") if host == "/dev"
               else HostPath("host-nvidia", host, inside, "DirectoryOrCreate", "HostToContainer"))
    return [HostPath("host-sys", "/sys", "/host/sys", "Directory"), devices,
            HostPath("host-mounts", "/proc/1/mounts", "/host/proc/1/mounts", "File"),
            HostPath("gpu-health", GPU_HEALTH_DIR, f"/host{GPU_HEALTH_DIR}", "DirectoryOrCreate")]


def pod_probes(cluster: Cluster) -> dict:
    """The probes file of the pod (the slurm role writes the hosts' own)."""
    return {
        "gpu_health_file": f"/host{GPU_HEALTH_DIR}/{GPU_HEALTH_FILE}",
        "gpu_health_max_age_s": GPU_HEALTH_MAX_AGE_S,
        "gpu_devices_dir": DEVICE_DIRS[_gpu_driver(cluster)][2],
        "infiniband_dir": "/host/sys/class/infiniband",
        "hca_port": 1,
        "mounts_file": "/host/proc/1/mounts",
        "timeout_s": 20,
    }


def _gpu_driver(cluster: Cluster) -> str:
    k8s = cluster.blueprint.kubernetes
    return k8s.gpu_driver if k8s is not None else "host"


def gpu_groups(cluster: Cluster) -> list[Group]:
    """The Kubernetes node groups with GPUs: where the check runs."""
    return [g for g in kubernetes_groups(cluster) if g.gpu is not None]


def kubernetes_signal() -> dict[str, str]:
    """The names the check writes on a node, from the catalog (the script cannot import aiinfra)."""
    return {
        "condition_type": NODE_HEALTH_CONDITION,
        "taint_key": NODE_STATE_KEY,
        "taint_value": NODE_HEALTH_DRAIN_STATE,
        "taint_effect": NODE_STATE_EFFECT[NODE_HEALTH_DRAIN_STATE],
        "reason_annotation": NODE_STATE_REASON_ANNOTATION,
    }


def node_health_config(cluster: Cluster) -> dict:
    """``nodecheck.json`` of the DaemonSet: the Slurm file's shape, for the Kubernetes GPU groups."""
    return {"cluster": cluster.blueprint.name, "groups": [node_check_group(cluster, g) for g in gpu_groups(cluster)],
            "kubernetes": kubernetes_signal()}


def interval_s(cluster: Cluster) -> int:
    """Seconds between two checks: Slurm's HealthCheckInterval, so both schedulers react alike."""
    slurm = cluster.blueprint.slurm
    return slurm.health_check_interval_s if slurm is not None else Slurm.model_fields["health_check_interval_s"].default


def script_text() -> str:
    """The health check script of the slurm role (a checkout's, else the project's)."""
    for root in (templates_dir().parent, project_root()):
        if (root / SCRIPT).is_file():
            return (root / SCRIPT).read_text(encoding="utf-8")
    raise RuntimeError(f"{SCRIPT} not found beside {templates_dir()} nor in {project_root()}")


def _meta(name: str, namespace: str | None = NODE_HEALTH_NAMESPACE) -> dict:
    meta: dict = {"name": name, "labels": dict(MANAGED)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def rbac_objects() -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(NAME, None),
         "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]},
                   {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta(NAME, None),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NODE_HEALTH_NAMESPACE}]},
    ]


def config_map(cluster: Cluster) -> dict:
    data = {
        NAME: script_text(),
        CONFIG_FILE: json.dumps(node_health_config(cluster), indent=2, sort_keys=True) + "\n",
        PROBES_FILE: json.dumps(pod_probes(cluster), indent=2, sort_keys=True) + "\n",
    }
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(NAME), "data": data}


def daemon_set(cluster: Cluster, config: dict) -> dict:
    image = site_image(cluster, cluster.blueprint.versions.images[NODECHECK_IMAGE_KEY])  # checks.node_health: pinned
    # a new script restarts the pods; the expectations and probes are read again on every round
    # (the ConfigMap volume is updated in place), so adding a node changes no other node's pod
    digest = hashlib.sha256(config["data"][NAME].encode()).hexdigest()
    selector = {"app.kubernetes.io/name": NAME}
    command = ["python3", f"{MOUNT_DIR}/{NAME}", "--kubernetes", "--config", f"{MOUNT_DIR}/{CONFIG_FILE}",
               "--probes", f"{MOUNT_DIR}/{PROBES_FILE}", "--interval", str(interval_s(cluster))]
    mounts = [{"name": "config", "mountPath": MOUNT_DIR, "readOnly": True}]
    volumes: list[dict] = [{"name": "config", "configMap": {"name": NAME, "defaultMode": 0o444}}]
    for hp in host_paths(cluster):
        mount = {"name": hp.volume, "mountPath": hp.inside, "readOnly": True}
        if hp.propagation:
            mount["mountPropagation"] = hp.propagation
        mounts.append(mount)
        volumes.append({"name": hp.volume, "hostPath": {"path": hp.host, "type": hp.kind}})
    container = {
        "name": "nodecheck",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": mounts,
    }
    groups = sorted(g.name for g in gpu_groups(cluster))
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(NAME),
        "spec": {
            "selector": {"matchLabels": selector},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {"labels": dict(MANAGED), "annotations": {CONFIG_HASH_ANNOTATION: digest}},
                "spec": {
                    "serviceAccountName": NAME,
                    "priorityClassName": "system-node-critical",
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [
                            {"key": NODE_GROUP_LABEL, "operator": "In", "values": groups}]}]}}},
                    # GPU nodes repel pods without GPUs; a drained or down node keeps its check, so
                    # the check can lift its own drain
                    "tolerations": [{"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]},
                                    {"key": NODE_STATE_KEY, "operator": "Exists"}],
                    "securityContext": {"runAsNonRoot": True, "runAsUser": NOBODY, "runAsGroup": NOBODY,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _header(cluster: Cluster, what: str) -> str:
    return f"# {what} of '{cluster.env}', rendered by aiinfra from {cluster.source}. Do not edit.\n"


@renderer("k8s-node-health", "Kubernetes node health check: the Slurm health check as a DaemonSet on GPU nodes")
def render_node_health(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    if not uses_kubernetes(cluster) or not gpu_groups(cluster):
        return {}
    config = config_map(cluster)
    files = {
        "rbac.yaml": _header(cluster, "Node health check: service account and node permissions")
        + dump_objects(rbac_objects()),
        # literal blocks: the script and the JSON read as they are in review
        "configmap.yaml": _header(cluster, "Node health check: script, expectations, probes")
        + dump_objects([config]),
        "daemonset.yaml": _header(cluster, "Node health check DaemonSet") + dump_objects(
            [daemon_set(cluster, config)]),
    }
    return component(COMPONENT, files, cluster.env)
