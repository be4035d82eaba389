"""Monitoring (``cluster`` phase): every exporter the host roles run is pinned in
``versions.exporters`` (an unpinned one would be installed at no known version, and its hosts would
be missing from Prometheus' targets)."""

from __future__ import annotations

from collections.abc import Iterator

from ClusterShell.NodeSet import NodeSet

from aiinfra.catalog.monitoring import known_versions
from aiinfra.checks.registry import error, validator
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.monitoring import host_exporter_hosts
from aiinfra.spec.cluster import Cluster


@validator("cluster")
def exporters_pinned(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    pinned = cluster.blueprint.versions.exporters
    for exporter, hosts in host_exporter_hosts(cluster).items():
        if hosts and exporter not in pinned:
            yield error(("versions", "exporters"), "exporter-not-pinned",
                        f"{NodeSet.fromlist(hosts)} run {exporter} (the host roles install it), but versions.exporters "
                        f"does not pin it", f"add versions.exporters.{exporter}: one of "
                        f"{', '.join(known_versions(exporter))}")
