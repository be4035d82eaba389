"""The rail networks' nv-ipam pools (``cluster`` phase): every Kubernetes node with rails gets its block.

Each rail's IPPool (``k8s/network-operator/rail-ippools.yaml``) covers the upper half of the rail
subnet and hands every node of the rail groups a block of ``kubernetes.rdma_shared_max_pods``
addresses; nv-ipam gives a node that finds no free block no address on that rail.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.checks.registry import error, validator
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.spec.cluster import Cluster


@validator("cluster")
def rail_pools_fit(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    k8s, ipoib = cluster.blueprint.kubernetes, cluster.blueprint.networks.ipoib
    if k8s is None or ipoib is None or cluster.fabric is None:
        return
    nodes = sum(g.node_count for g in cluster.groups_for_scheduler("kubernetes") if g.node_type.rails)
    pool = 2 ** (32 - ipoib.rail_prefix - 1)  # the upper half of a rail subnet
    if nodes * k8s.rdma_shared_max_pods > pool:
        yield error(("kubernetes", "rdma_shared_max_pods"), "k8s-rail-pool-too-small",
                    f"{nodes} Kubernetes nodes with rails x {k8s.rdma_shared_max_pods} pod addresses each do not fit "
                    f"a rail's pod range of {pool} addresses (the upper half of a /{ipoib.rail_prefix})",
                    f"lower rdma_shared_max_pods to {pool // max(nodes, 1)} or less, or shorten "
                    "networks.ipoib.rail_prefix (larger rail subnets)")
