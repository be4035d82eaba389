"""Helm charts of the Kubernetes platform: where each chart is published (facts).

The VERSION of every chart is not here: it is pinned per environment in the blueprint
(``versions.charts``), so one place says what runs where. Sources: each project's install guide
(NVIDIA GPU Operator and Network Operator: NGC Helm repository; Kueue and LeaderWorkerSet: OCI
charts on registry.k8s.io; kube-prometheus-stack: prometheus-community; KEDA: kedacore; Calico: the
tigera-operator chart of docs.tigera.io; Cilium: helm.cilium.io; Argo CD: the argo-cd chart of
argoproj.github.io/argo-helm).

The Kubeflow training-operator has no official Helm chart: it is installed from its kustomize
overlay ``manifests/overlays/standalone`` of github.com/kubeflow/trainer (the repository's name
since the v2 rename; v1 releases keep their ``v1.x.y`` tags there) at the pinned tag, as an Argo CD
source path or a Pulumi kustomize Directory (``Chart.path``).

The key paths each pinned chart's values accept are facts too, extracted by
``scripts/chart_keys.py`` into ``data/chart_keys/<chart>-<version>.txt`` (:func:`chart_keys`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from aiinfra.catalog.names import lookup


@dataclass(frozen=True)
class Chart:
    key: str  # the key of versions.charts
    chart: str  # chart name inside the repository
    repository: str  # https:// Helm repository or oci:// registry path (without the chart name)
    namespace: str  # namespace the release is installed into
    release: str  # Helm release name
    path: str = ""  # a kustomize folder of the git repository ``repository`` instead of a Helm chart

    @property
    def is_kustomize(self) -> bool:
        return bool(self.path)

    def kustomize_url(self, version: str) -> str:
        """The folder at tag ``version``, as Pulumi's kustomize Directory (and a browser) takes it."""
        return f"{self.repository.removesuffix('.git')}/tree/{version}/{self.path}"

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
        Chart("argo-cd", "argo-cd", "https://argoproj.github.io/argo-helm", "argocd", "argocd"),
        Chart("training-operator", "training-operator", "https://github.com/kubeflow/trainer.git", "kubeflow",
              "training-operator", path="manifests/overlays/standalone"),
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


# ------------------------------------------------------------------ key paths of each chart's values

CHART_KEYS_DIR = Path(__file__).parent / "data" / "chart_keys"
OPEN = "*"  # last segment of a line: any key below the path is accepted


def join_key_path(parts: tuple[str, ...]) -> str:
    """``("grafana", "grafana.ini")`` -> ``grafana.grafana\\.ini``: dots inside a key are escaped."""
    return ".".join(p.replace("\\", "\\\\").replace(".", "\\.") for p in parts)


def split_key_path(line: str) -> tuple[str, ...]:
    parts, cur, escaped = [], [], False
    for ch in line:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return tuple(parts)


def chart_keys_file(key: str, version: str) -> Path:
    return CHART_KEYS_DIR / f"{key}-{version}.txt"


@cache
def _committed_key_lists() -> frozenset[str]:
    """Names of the committed lists: a blueprint's version is looked up among them, never joined
    into a path (a version is user input: '../x' or 2,000 characters)."""
    return frozenset(p.name for p in CHART_KEYS_DIR.glob("*.txt"))


@cache
def chart_keys(key: str, version: str) -> frozenset[tuple[str, ...]] | None:
    """The key paths the values of chart ``key`` at ``version`` accept (a path ending in
    :data:`OPEN` opens everything below it), or None when no list is committed for that version."""
    name = f"{key}-{version}.txt"
    if name not in _committed_key_lists():
        return None
    path = CHART_KEYS_DIR / name
    lines = (line.strip() for line in path.read_text().splitlines())
    return frozenset(split_key_path(line) for line in lines if line and not line.startswith("#"))
