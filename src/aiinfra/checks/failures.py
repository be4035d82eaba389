"""Planning for failure: a group's declared spare pool against what the site's failure rates, repair
time and target availability call for (:mod:`aiinfra.plan.failures`, read from the plan).

Only groups that hold spares (``spares_per_su`` > 0) are checked: a group without a spare pool
(the default, and the dev environment's one-node groups) is a choice the failures table already
shows, with the recommendation beside it; a pool that is declared and too small is the finding.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.checks.registry import validator, warning
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.common import DAY_S
from aiinfra.spec.cluster import Cluster


@validator("cluster")
def spares_cover_failures(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    if plan.failures is None:
        return
    index = {g.name: i for i, g in enumerate(cluster.blueprint.node_groups)}
    target = plan.failures.spare_target_availability
    repair_days = plan.failures.node_repair_s / DAY_S
    for g in plan.failures.groups:
        if not 0 < g.spares_per_su < g.recommended_spares_per_su:
            continue
        yield warning(
            ("node_groups", index[g.name], "spares_per_su"), "plan-spares-short",
            f"{g.spares_per_su} spare(s) per SU cover every node down only {g.spare_coverage:.2%} of the time: "
            f"{g.nodes_per_su} nodes per SU failing {g.node_failures_per_year:.2g} times a year each with "
            f"{repair_days:g}-day repairs leave {g.mean_down_per_su:.3g} down on average; the target "
            f"{target:.2%} needs {g.recommended_spares_per_su}",
            f"set spares_per_su: {g.recommended_spares_per_su} on '{g.name}' (and size its jobs to leave them), "
            "or shorten site.node_repair_days, or lower site.spare_target_availability",
        )
