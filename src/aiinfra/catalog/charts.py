"""Helm charts of the Kubernetes platform: where each chart is published (facts).

The VERSION of every chart is not here: it is pinned per environment in the blueprint
(``versions.charts``), so one place says what runs where. Sources: each project's install guide
(NVIDIA GPU Operator and Network Operator: NGC Helm repository; Kueue and LeaderWorkerSet: OCI
charts on registry.k8s.io; kube-prometheus-stack: prometheus-community; KEDA: kedacore; Calico: the
tigera-operator chart of docs.tigera.io; Cilium: helm.cilium.io).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiinfra.catalog.names import lookup


@dataclass(frozen=True)
class Chart:
    key: str  # the key of versions.charts
    chart: str  # chart name inside the repository
    repository: str  # https:// Helm repository or oci:// registry path (without the chart name)
    namespace: str  # namespace the release is installed into
    release: str  # Helm release name

    @property
    def is_oci(self) -> bool:
        return self.repository.startswith("oci://")

    @property
    def reference(self) -> str:
        """What ``helm install`` (and Pulumi's Release ``chart``) takes: a name or an OCI URL."""
        return f"{self.repository}/{self.chart}" if self.is_oci else self.chart

    @property
    def argocd_repo_url(self) -> str:
        """Argo CD spells OCI Helm repositories without the scheme."""
        return self.repository.removeprefix("oci://")


CHARTS: dict[str, Chart] = {
    c.key: c
    for c in (
        Chart("gpu-operator", "gpu-operator", "https://helm.ngc.nvidia.com/nvidia", "gpu-operator", "gpu-operator"),
        Chart("network-operator", "network-operator", "https://helm.ngc.nvidia.com/nvidia", "network-operator",
              "network-operator"),
        Chart("kueue", "kueue", "oci://registry.k8s.io/kueue/charts", "kueue-system", "kueue"),
        Chart("lws", "lws", "oci://registry.k8s.io/lws/charts", "lws-system", "lws"),
        Chart("kube-prometheus-stack", "kube-prometheus-stack", "https://prometheus-community.github.io/helm-charts",
              "monitoring", "monitoring"),
        Chart("keda", "keda", "https://kedacore.github.io/charts", "keda", "keda"),
        Chart("tigera-operator", "tigera-operator", "https://docs.tigera.io/calico/charts", "tigera-operator",
              "calico"),
        Chart("cilium", "cilium", "https://helm.cilium.io", "kube-system", "cilium"),
    )
}

# The CNI chart of each blueprint value of kubernetes.cni.
CNI_CHARTS = {"calico": "tigera-operator", "cilium": "cilium"}

# Images the NVIDIA Network Operator release N deploys for the components of a NicClusterPolicy:
# all are published under one repository with the tag ``network-operator-v<N>``.
NETWORK_OPERATOR_IMAGE_REPOSITORY = "nvcr.io/nvidia/mellanox"
NETWORK_OPERATOR_IMAGES = {
    "rdma_shared_device_plugin": "k8s-rdma-shared-dev-plugin",
    "sriov_device_plugin": "sriov-network-device-plugin",
    "multus": "multus-cni",
    "cni_plugins": "plugins",
    "ipoib_cni": "ipoib-cni",
    "nv_ipam": "nvidia-k8s-ipam",
}


def network_operator_image_tag(chart_version: str) -> str:
    return f"network-operator-v{chart_version.lstrip('v')}"


def chart(key: str) -> Chart:
    return lookup(CHARTS, {}, key, "chart")
