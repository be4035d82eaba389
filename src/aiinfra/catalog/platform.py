"""The Kubernetes platform aiinfra installs: its components, in order, with the chart each one is
(key of ``versions.charts``, repository in :mod:`aiinfra.catalog.charts`). The one list that the
renderer (folders under ``k8s/``), Argo CD (one Application each), Pulumi (one ComponentResource
each) and the checks (every chart pinned) walk."""

from __future__ import annotations

from dataclasses import dataclass

from aiinfra.catalog.k8s_resources import NODE_HEALTH_NAMESPACE

# The DCGM exporter's metrics ConfigMap: the GPU Operator's values name it, the gpu-operator
# component renders it (the fields it lists are the monitoring renderer's DCGM_FIELDS).
DCGM_CONFIGMAP = "dcgm-metrics"
DCGM_CSV_KEY = "dcgm-metrics.csv"
DCGM_COLLECTORS_PATH = f"/etc/dcgm-exporter/{DCGM_CSV_KEY}"


@dataclass(frozen=True)
class ComponentSpec:
    name: str  # folder under k8s/, Argo CD Application, Pulumi component
    type_token: str  # Pulumi type
    namespace: str
    chart: str | None  # key of versions.charts (None: plain objects)
    after: tuple[str, ...]  # components whose CRDs, webhooks or namespaces this one needs
    description: str


COMPONENTS: tuple[ComponentSpec, ...] = (
    ComponentSpec("namespaces", "aiinfra:k8s:Namespaces", "default", None, (),
                  "namespaces with Pod Security labels; default-deny NetworkPolicies in workload namespaces"),
    # installed once by hand from its chart (the helm line in k8s/argocd/values.yaml), then this
    # component's Application keeps Argo CD itself at the pinned chart (docs/kubernetes.md)
    ComponentSpec("argocd", "aiinfra:k8s:ArgoCd", "argocd", "argo-cd", ("namespaces",),
                  "Argo CD: syncs gitops/ (the app of apps) and manages its own release"),
    ComponentSpec("monitoring", "aiinfra:k8s:Monitoring", "monitoring", "kube-prometheus-stack", ("namespaces",),
                  "Prometheus, Alertmanager, Grafana; DCGM exporter ServiceMonitor; GPU Xid/ECC/thermal alerts"),
    ComponentSpec("gpu-operator", "aiinfra:k8s:GpuOperator", "gpu-operator", "gpu-operator",
                  ("namespaces", "monitoring"), "NVIDIA GPU Operator: device plugin, DCGM exporter, MIG, toolkit"),
    ComponentSpec("network-operator", "aiinfra:k8s:NetworkOperator", "network-operator", "network-operator",
                  ("namespaces",), "NVIDIA Network Operator: RDMA device plugin, Multus, IPoIB/host-device networks"),
    ComponentSpec("lustre", "aiinfra:k8s:LustreStorage", "default", None, ("namespaces",),
                  "Lustre PersistentVolumes and claims in every workload namespace"),
    # the same for GPFS (storage.parallel_fs: gpfs); only the chosen file system's component renders
    ComponentSpec("gpfs", "aiinfra:k8s:GpfsStorage", "default", None, ("namespaces",),
                  "GPFS PersistentVolumes and claims in every workload namespace"),
    ComponentSpec("lws", "aiinfra:k8s:LeaderWorkerSet", "lws-system", "lws", ("namespaces",),
                  "LeaderWorkerSet controller (multi-node serving)"),
    ComponentSpec("kueue", "aiinfra:k8s:Kueue", "kueue-system", "kueue", ("namespaces", "monitoring", "lws"),
                  "Kueue: GPU flavors, quotas, fabric topology for topology-aware placement"),
    ComponentSpec("keda", "aiinfra:k8s:Keda", "keda", "keda", ("namespaces",),
                  "KEDA: event-driven autoscaling of serving deployments"),
    ComponentSpec("training-operator", "aiinfra:k8s:TrainingOperator", "kubeflow", "training-operator",
                  ("namespaces",), "Kubeflow training-operator: runs the rendered PyTorchJobs (kubeflow.org/v1)"),
    ComponentSpec("node-health", "aiinfra:k8s:NodeHealth", NODE_HEALTH_NAMESPACE, None, ("namespaces",),
                  "the node health check on GPU nodes: node condition, drain taint and reason, as Slurm's"),
)


#: the storage component of each parallel file system (storage.parallel_fs): a cluster installs only its own
PARALLEL_FS_COMPONENT = {"lustre": "lustre", "gpfs": "gpfs"}


def components(parallel_fs: str = "lustre") -> tuple[ComponentSpec, ...]:
    """COMPONENTS of a cluster whose parallel file system is ``parallel_fs``: the other file system's
    storage component left out."""
    other = {name for fs, name in PARALLEL_FS_COMPONENT.items() if fs != parallel_fs}
    return tuple(c for c in COMPONENTS if c.name not in other)


def component_spec(name: str) -> ComponentSpec:
    return next(c for c in COMPONENTS if c.name == name)
