"""The planner: pure arithmetic from requests to plans (docs/planner.md)."""

from aiinfra.plan.cluster import ClusterPlan, plan_blueprint
from aiinfra.plan.common import PlanError
from aiinfra.plan.power import NodePower, PowerPlan, plan_power
from aiinfra.plan.reliability import ReliabilityPlan, plan_reliability
from aiinfra.plan.serving import (
    ServingPlan,
    ServingRequest,
    check_serving,
    plan_serving,
    serving_request_from_deployment,
)
from aiinfra.plan.training import (
    TrainingPlan,
    TrainingRequest,
    check_training,
    plan_training,
    training_request_from_job,
)

__all__ = [
    "ClusterPlan",
    "NodePower",
    "PlanError",
    "PowerPlan",
    "ReliabilityPlan",
    "ServingPlan",
    "ServingRequest",
    "TrainingPlan",
    "TrainingRequest",
    "check_serving",
    "check_training",
    "plan_blueprint",
    "plan_power",
    "plan_reliability",
    "plan_serving",
    "plan_training",
    "serving_request_from_deployment",
    "training_request_from_job",
]
