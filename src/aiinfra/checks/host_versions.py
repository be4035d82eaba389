"""Host software pinned (``cluster`` phase): every version a role installs on this cluster's hosts, or a
job runs, is in ``versions`` (roles take it from the inventory's ``aiinfra_versions`` and have no
default of their own). :data:`NEEDED` says which role needs which key on which hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ClusterShell.NodeSet import NodeSet

from aiinfra.catalog.versions import VERSION_FORMATS
from aiinfra.checks.registry import error, validator
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.spec.cluster import Cluster


def gpu_hosts(cluster: Cluster) -> list[str]:
    return [h for g in cluster.groups.values() if g.gpus_per_node for h in g.hosts]


def slurm_gpu_hosts(cluster: Cluster) -> list[str]:
    return [h for g in cluster.groups_for_scheduler("slurm") if g.gpus_per_node for h in g.hosts]


def kubernetes_hosts(cluster: Cluster) -> list[str]:
    return [h for g in cluster.groups_for_scheduler("kubernetes") for h in g.hosts] + [
        h for h in cluster.hosts_with_role("k8s_control_plane")]


def megatron_job_hosts(cluster: Cluster) -> list[str]:
    """The hosts of the groups whose Megatron jobs run the pinned checkout (no entry point of their own)."""
    groups = {j.node_group for j in cluster.blueprint.training if j.framework == "megatron" and j.entrypoint is None}
    return [h for name in sorted(groups) if name in cluster.groups for h in cluster.groups[name].hosts]


# versions key -> (role that installs it, the hosts that need it, what it is)
NEEDED: dict[str, tuple[str, Callable[[Cluster], list[str]], str]] = {
    "container_toolkit": ("container_runtime", gpu_hosts, "the NVIDIA Container Toolkit"),
    "enroot": ("container_runtime", slurm_gpu_hosts, "enroot"),
    "pyxis": ("container_runtime", slurm_gpu_hosts, "pyxis"),
    "dcgm": ("dcgm", gpu_hosts, "DCGM"),
    "nccl_tests": ("nccl_tests", slurm_gpu_hosts, "nccl-tests (the fabric acceptance jobs)"),
    "megatron_lm": ("megatron_lm", megatron_job_hosts, "Megatron-LM (Megatron jobs without an entrypoint)"),
}


@validator("cluster")
def host_versions_pinned(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    v = cluster.blueprint.versions
    for key, (role, hosts_of, what) in NEEDED.items():
        hosts = hosts_of(cluster)
        if hosts and not getattr(v, key):
            yield error(("versions", key), "missing-version",
                        f"{NodeSet.fromlist(hosts)} need {what} (role {role}), but versions.{key} is not pinned",
                        f"pin it, e.g. versions.{key}: {VERSION_FORMATS[key][1]}")
    if kubernetes_hosts(cluster) and "pause" not in v.images:
        yield error(("versions", "images"), "missing-version",
                    f"{NodeSet.fromlist(kubernetes_hosts(cluster))} run containerd for Kubernetes, but versions.images "
                    "does not pin its pod sandbox image 'pause'",
                    "pin the one kubeadm of versions.kubernetes pulls, e.g. images.pause: registry.k8s.io/pause:3.10")
