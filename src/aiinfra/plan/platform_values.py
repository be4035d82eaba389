"""Helm values of the Kubernetes platform's charts, built from the blueprint (pure functions).

They live here, before the checks, so that :mod:`aiinfra.checks.charts` sees exactly the values
:mod:`aiinfra.render.platform` prints into ``k8s/<component>/values.yaml`` and refuses a key the
pinned chart does not have. :data:`CHART_VALUES` maps a component of
:data:`aiinfra.catalog.platform.COMPONENTS` to its builder.

Facts checked in each chart's source at the version the stacks pin are noted where they are used.
"""

from __future__ import annotations

from collections.abc import Callable

import yaml

from aiinfra.catalog.k8s_resources import GPU_TOLERATION
from aiinfra.catalog.platform import DCGM_COLLECTORS_PATH, DCGM_CONFIGMAP
from aiinfra.spec.cluster import Cluster

# The host side of containerd (roles/containerd): config.toml in containerd_config_dir imports
# containerd_dropin_dir/*.toml, where the GPU Operator's toolkit writes the nvidia runtime.
# gpu-operator v25.10.0 (controllers/object_controls.go, getRuntimeConfigFiles/transformForRuntime)
# reads CONTAINERD_CONFIG as the TOP-LEVEL config and RUNTIME_DROP_IN_CONFIG as the drop-in; the
# toolkit it deploys (nvidia-container-toolkit v1.18.0, pkg/config/engine/containerd/config_drop_in.go)
# writes the runtime into the drop-in and adds an import to the top-level file only when no import
# covers the drop-in's folder: with the role's `imports`, config.toml stays the role's.
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CONTAINERD_DROP_IN = "/etc/containerd/conf.d/99-nvidia.toml"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


def gpu_operator_values(cluster: Cluster) -> dict:
    """gpu-operator chart (deployments/gpu-operator/values.yaml). The container runtime is not a
    chart value: the operator reads it from each node's status (controllers/clusterinfo)."""
    bp = cluster.blueprint
    k8s = bp.kubernetes
    assert k8s is not None
    driver: dict = {"enabled": k8s.gpu_driver == "operator"}
    if k8s.gpu_driver == "operator":
        # GPUDirect RDMA: nvidia-peermem against the DOCA-OFED the host roles install
        driver.update({"version": bp.versions.nvidia_driver, "rdma": {"enabled": True, "useHostMofed": True}})
    return {
        "driver": driver,
        "toolkit": {"enabled": True, "env": [
            {"name": "CONTAINERD_CONFIG", "value": CONTAINERD_CONFIG},
            {"name": "RUNTIME_DROP_IN_CONFIG", "value": CONTAINERD_DROP_IN},
            {"name": "CONTAINERD_SOCKET", "value": CONTAINERD_SOCKET},
        ]},
        "devicePlugin": {"enabled": True},
        "dcgmExporter": {
            "enabled": True,
            "config": {"name": DCGM_CONFIGMAP},
            "env": [{"name": "DCGM_EXPORTER_COLLECTORS", "value": DCGM_COLLECTORS_PATH}],
            "serviceMonitor": {"enabled": False},  # ours, in monitoring/
        },
        "mig": {"strategy": k8s.mig_strategy},
        "migManager": {"enabled": k8s.mig_strategy != "none"},
        "nfd": {"enabled": True},
        "gfd": {"enabled": True},
        "daemonsets": {"tolerations": [GPU_TOLERATION]},
    }


def network_operator_values(cluster: Cluster) -> dict:
    """network-operator chart (deployment/network-operator/values.yaml). What it deploys on the
    nodes (device plugins, Multus, nv-ipam) is the NicClusterPolicy's, not the chart's."""
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None
    return {
        "nfd": {"enabled": False},  # the GPU Operator's node-feature-discovery serves both operators
        "sriovNetworkOperator": {"enabled": k8s.rdma == "sriov"},
        "operator": {"tolerations": [GPU_TOLERATION]},
    }


# Kueue's Configuration (config.kueue.x-k8s.io/v1beta2), the chart's managerConfig.controllerManagerConfigYaml
# at kueue v0.19.2 (charts/kueue/values.yaml). Replacing the string replaces the chart's whole default;
# what it leaves out takes the Go defaults (apis/config/v1beta2/defaults.go: health :8081, metrics :8443,
# webhook 9443, leader election id c1f6bfd2.kueue.x-k8s.io - the same values the chart writes).
# - frameworks: the chart's default list, plus kubeflow.org/pytorchjob (commented out there), which the
#   training PyTorchJobs (render/jobs.py) need for their queue label to mean anything;
# - excludeResourcePrefixes (type Resources): ephemeral-storage is node-local NVMe, not a quota the
#   ClusterQueues cover; with the default BlockUndeclared strategy a pod requesting it (serving with
#   weights_source local-nvme) would never be admitted.
KUEUE_FRAMEWORKS = (
    "batch/job", "kubeflow.org/mpijob", "ray.io/rayjob", "ray.io/rayservice", "ray.io/raycluster",
    "jobset.x-k8s.io/jobset", "kubeflow.org/pytorchjob", "workload.codeflare.dev/appwrapper",
    "trainer.kubeflow.org/trainjob", "pod", "deployment", "statefulset", "leaderworkerset.x-k8s.io/leaderworkerset",
)
KUEUE_EXCLUDED_RESOURCES = ("ephemeral-storage",)


def kueue_configuration() -> dict:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": True},
        "clientConnection": {"qps": 300, "burst": 500},
        "integrations": {"frameworks": list(KUEUE_FRAMEWORKS)},
        "resources": {"excludeResourcePrefixes": list(KUEUE_EXCLUDED_RESOURCES)},
    }


def kueue_values(cluster: Cluster) -> dict:
    return {
        "enablePrometheus": True,
        "controllerManager": {"replicas": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}},
        "managerConfig": {"controllerManagerConfigYaml": yaml.safe_dump(kueue_configuration(), sort_keys=True)},
    }


def lws_values(cluster: Cluster) -> dict:
    return {"replicaCount": 2}


def keda_values(cluster: Cluster) -> dict:
    return {"operator": {"replicaCount": 2}}


def argocd_values(cluster: Cluster) -> dict:
    """argo-cd chart (argoproj/argo-helm charts/argo-cd/values.yaml). Argo CD manages its own
    release after the first ``helm install``: its CRDs stay when the chart or the Application goes
    (``crds.keep``), so the Applications of every other component survive a mistake here."""
    return {
        "crds": {"install": True, "keep": True},
        "dex": {"enabled": False},  # no SSO configured by aiinfra: the admin account and RBAC
        "notifications": {"enabled": False},  # alerts go through Alertmanager (monitoring)
    }


CHART_VALUES: dict[str, Callable[[Cluster], dict]] = {
    "argocd": argocd_values,
    "gpu-operator": gpu_operator_values,
    "network-operator": network_operator_values,
    "kueue": kueue_values,
    "lws": lws_values,
    "keda": keda_values,
}
