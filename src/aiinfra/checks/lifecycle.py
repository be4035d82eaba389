"""Nodes out of service and spares: the ``nodes:`` section names real hosts once, and the
training jobs leave room for a requeue after a failure."""

from __future__ import annotations

from collections.abc import Iterator

from ClusterShell.NodeSet import NodeSet

from aiinfra.checks.registry import BlueprintView, error, validator, warning
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.spec.cluster import Cluster


@validator()
def node_states_name_hosts(v: BlueprintView) -> Iterator[Problem]:
    known = {h for hosts in v.hosts.values() for h in hosts}
    seen: dict[str, str] = {}
    for key in v.bp.nodes:
        path = ("nodes", key)
        hosts = list(NodeSet(key))
        unknown = [h for h in hosts if h not in known]
        if unknown:
            yield error(path, "undefined-host", f"{NodeSet.fromlist(unknown)} is in no node group",
                        "name hosts of the node groups (a removed host needs no entry)")
        for h in hosts:
            if h in seen:
                yield error(path, "duplicate-host", f"{h} has a state here and under '{seen[h]}'",
                            "give every host one state")
            seen.setdefault(h, key)


@validator("cluster")
def jobs_survive_a_failure(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    """With ~5 % of GPUs failing a year a node fails every few days: a job that needs every node in
    service cannot restart from its checkpoint until the repair is done."""
    for i, job in enumerate(cluster.blueprint.training):
        group = cluster.groups.get(job.node_group)
        if group is None or not group.gpus_per_node:
            continue
        free = len(group.in_service) - job.nodes
        if free < 1:
            yield warning(("training", i, "nodes"), "train-no-spare",
                          f"the job takes all {len(group.in_service)} nodes in service of '{group.name}': after a "
                          "node failure its requeue waits for the repair",
                          f"set spares_per_su on '{group.name}' and size the job to leave them, or ask for fewer nodes")
