"""The planner's preflight, as a ``cluster``-phase validator: `validate`, `render`, `plan` and
`pulumi up` refuse a job or deployment that cannot fit, with the planner's numbers."""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.errors import Problem
from aiinfra.plan.cluster import plan_cluster
from aiinfra.spec.checks import validator

PLAN_ERRORS = {"plan-training", "plan-serving", "plan-unknown-name", "plan-no-gpus", "plan-too-many-nodes",
               "plan-claim"}
PLAN_WARNINGS = {"plan-serving-capacity", "plan-power-budget"}


@validator("cluster")
def planner_preflight(cluster) -> Iterator[Problem]:
    yield from plan_cluster(cluster).problems
