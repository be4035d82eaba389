"""The Kubernetes cluster (``cluster`` phase): what the kubeadm, Lustre and Kueue renderers need of
the blueprint, refused here so that ``render`` never meets it."""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.checks.registry import error, validator
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.spec.cluster import Cluster
from aiinfra.spec.models import Kubernetes


def _kubernetes(cluster: Cluster) -> Kubernetes | None:
    """The ``kubernetes`` section when some node group runs under Kubernetes (what is rendered)."""
    if not cluster.groups_for_scheduler("kubernetes"):
        return None
    return cluster.blueprint.kubernetes


@validator("cluster")
def api_endpoint(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    """Several control-plane hosts share one endpoint (kubeadm's controlPlaneEndpoint)."""
    k8s = _kubernetes(cluster)
    control = cluster.hosts_with_role("k8s_control_plane")
    if k8s is not None and not k8s.api_vip and len(control) > 1:
        yield error(("kubernetes", "api_vip"), "k8s-api-vip-missing",
                    f"{len(control)} control-plane hosts need a shared endpoint",
                    "set kubernetes.api_vip to a VIP or DNS name in front of the API servers")


@validator("cluster")
def queue_shares(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    """Kueue's queues split each GPU flavor: their shares cannot add up to more than the whole."""
    k8s = _kubernetes(cluster)
    if k8s is None:
        return
    total = sum(k8s.queue_gpu_shares.values())
    if total > 1 + 1e-9:
        yield error(("kubernetes", "queue_gpu_shares"), "k8s-queue-shares-over-one",
                    f"the queue shares add up to {total:g}, more than the whole cluster",
                    "make the shares add up to 1 or less")


@validator("cluster")
def lustre_volumes(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    """``lustre_volumes: csi`` names the CSI driver its PersistentVolumes use."""
    k8s = _kubernetes(cluster)
    if k8s is None or cluster.blueprint.storage.lustre is None:
        return
    if k8s.lustre_volumes == "csi" and not k8s.lustre_csi_driver:
        yield error(("kubernetes", "lustre_csi_driver"), "k8s-lustre-csi-driver-missing",
                    "lustre_volumes: csi needs the CSI driver's name",
                    "set kubernetes.lustre_csi_driver, or use lustre_volumes: static")
