"""Supported systems only (``cluster`` phase): refuse an OS the host roles cannot install on.

The munge, slurm, containerd and kubernetes roles install with apt only (Debian and Ubuntu); the
blueprint schema also names rocky-9 and rhel-9 (the kernels, DOCA-OFED and Lustre tables know
them), but a cluster that needs one of those roles would fail half-way through ``hosts up``.
tests/hostroles/test_host_os.py keeps :data:`APT_ONLY_ROLES` equal to what the roles' tasks do.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.checks.registry import error, validator
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.spec.cluster import Cluster

APT_ONLY_ROLES = ("munge", "slurm", "containerd", "kubernetes")
APT_SYSTEMS = ("ubuntu-",)  # versions.os values the apt-only roles support


def roles_needed(cluster: Cluster) -> list[str]:
    """The apt-only roles this cluster runs: munge and slurm with Slurm, containerd and kubernetes
    with Kubernetes."""
    needed = []
    if cluster.groups_for_scheduler("slurm") or cluster.hosts_with_role("slurm_controller"):
        needed += ["munge", "slurm"]
    if cluster.groups_for_scheduler("kubernetes") or cluster.hosts_with_role("k8s_control_plane"):
        needed += ["containerd", "kubernetes"]
    return needed


@validator("cluster")
def os_supported_by_roles(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    os_name = cluster.blueprint.versions.os
    if os_name.startswith(APT_SYSTEMS):
        return
    needed = roles_needed(cluster)
    if needed:
        yield error(("versions", "os"), "os-unsupported-by-roles",
                    f"{os_name}: the {', '.join(needed)} role(s) this cluster needs install with apt only "
                    "(Debian/Ubuntu); `hosts up` would stop half-way",
                    "use ubuntu-22.04 or ubuntu-24.04 (the RedHat family is not implemented in these roles)")
