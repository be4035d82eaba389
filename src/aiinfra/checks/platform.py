"""The Kubernetes platform (``cluster`` phase): what the platform renderers need of the blueprint."""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.catalog.charts import CNI_CHARTS, chart
from aiinfra.catalog.platform import COMPONENTS
from aiinfra.checks.registry import validator
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.spec.cluster import Cluster


@validator("cluster")
def charts_pinned(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    """Every chart the platform (and the CNI) will install has its version pinned: `validate`
    refuses what `render` could not write."""
    if not cluster.groups_for_scheduler("kubernetes") or cluster.blueprint.kubernetes is None:
        return
    wanted = [(c.chart, ()) for c in COMPONENTS if c.chart]
    wanted.append((chart(CNI_CHARTS[cluster.blueprint.kubernetes.cni]).key, ("kubernetes", "cni")))
    for key, used_by in wanted:
        if not cluster.blueprint.versions.charts.get(key):
            yield Problem(("versions", "charts", key), "missing-chart-version",
                          f"chart '{key}' is used{' by ' + '.'.join(map(str, used_by)) if used_by else ''} but its "
                          "version is not pinned", hint=f"add `{key}: <version>` under versions.charts "
                                                         f"({chart(key).repository})")
