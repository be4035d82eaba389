"""The planner: pure arithmetic from requests to plans (docs/planner.md)."""

from aiinfra.plan.common import PlanError
from aiinfra.plan.training import (
    TrainingPlan,
    TrainingRequest,
    check_training,
    plan_training,
    training_request_from_job,
)

__all__ = [
    "PlanError",
    "TrainingPlan",
    "TrainingRequest",
    "check_training",
    "plan_training",
    "training_request_from_job",
]
