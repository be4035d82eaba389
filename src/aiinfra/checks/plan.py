"""The planner's preflight (``cluster`` phase): `validate`, `render`, `plan` and `pulumi up` refuse a
job or deployment that cannot fit, with the planner's numbers."""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.checks.registry import validator
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.spec.cluster import Cluster

PLAN_ERRORS = {"plan-training", "plan-serving", "plan-unknown-name", "plan-no-gpus", "plan-too-many-nodes",
               "plan-claim"}
PLAN_WARNINGS = {"plan-serving-capacity", "plan-power-budget"}


@validator("cluster")
def planner_preflight(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    yield from plan.problems
