"""Inverse questions: how many GPUs train a token budget in N days, and which micro-batch is fastest.

Both search with :func:`aiinfra.plan.training.plan_training` itself, so the answer is a plan the
forward direction gives back:

- GPUs for N days: whole nodes. From a first plan (the request's own GPU count) the time scales
  about as 1 / GPUs; the count is set from that, then walked a node at a time (or by doubling while
  nothing fits in memory) until the plan's training time is within the days and the next smaller
  count that plans at all is not. Layout, batch and efficiency follow the count (the global batch stays the request's).
- Micro-batch: each candidate size that divides the batch is planned; the fastest plan that fits
  wins, the smaller micro-batch on a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from aiinfra.plan.common import DAY_S, PlanError
from aiinfra.plan.training import TrainingPlan, TrainingRequest, plan_training

#: Micro-batch sizes tried by the search (sequences).
MICRO_BATCH_OPTIONS = (1, 2, 4, 8, 16)
#: Most GPUs the inverse search considers, and the most plans it makes.
MAX_GPUS = 1 << 20
MAX_STEPS = 200


@dataclass(frozen=True)
class GpusForDays:
    """The fewest whole nodes whose plan trains the token budget within ``days``."""

    days: float
    plan: TrainingPlan
    fewer_nodes_days: float | None  # the next smaller count that plans (None: none below it does)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "gpus_for_days", "days": self.days, "gpus": self.plan.request.gpus,
                "nodes": self.plan.nodes, "training_time_days": (self.plan.training_time_s or 0) / DAY_S,
                "next_fewer_days": self.fewer_nodes_days, "plan": self.plan.to_dict()}


def _days(request: TrainingRequest, gpus: int) -> tuple[float | None, TrainingPlan | None]:
    """(training days, plan) at ``gpus``; (None, None) when nothing fits or divides."""
    try:
        plan = plan_training(replace(request, gpus=gpus, dp=None), keep_alternatives=0)
    except PlanError:
        return None, None
    t = plan.training_time_s
    return (None if t is None else t / DAY_S), plan


def gpus_for_days(request: TrainingRequest, days: float) -> GpusForDays:
    """The fewest whole nodes (``request.gpus_per_node`` GPUs each) that train ``request.tokens``
    within ``days``; PlanError when the request has no token budget or no count up to MAX_GPUS does."""
    if request.tokens is None:
        raise PlanError("how many GPUs for N days needs a token budget (tokens)")
    if days <= 0:
        raise PlanError(f"days must be positive, got {days}")
    node = request.gpus_per_node
    nodes = max(1, math.ceil(request.gpus / node))
    taken, plan = _days(request, nodes * node)
    steps = 0
    while taken is None:  # nothing fits: double until something does
        nodes *= 2
        steps += 1
        if nodes * node > MAX_GPUS or steps > MAX_STEPS:
            raise PlanError(f"no GPU count up to {MAX_GPUS:,} fits {request.model.title}")
        taken, plan = _days(request, nodes * node)
    nodes = max(1, math.ceil(nodes * taken / days))  # time ~ 1 / GPUs
    best: tuple[int, TrainingPlan, float] | None = None
    taken, plan = _days(request, nodes * node)
    while steps <= MAX_STEPS:  # up a node while too slow (or not fitting)
        steps += 1
        if taken is not None and plan is not None and taken <= days:
            best = (nodes, plan, taken)
            break
        nodes += 1
        if nodes * node > MAX_GPUS:
            break
        taken, plan = _days(request, nodes * node)
    if best is None:
        raise PlanError(f"no GPU count up to {MAX_GPUS:,} trains {request.tokens:.3g} tokens of "
                        f"{request.model.title} in {days:g} days")
    count = best[0]
    while count > 1 and steps <= MAX_STEPS:  # down while still within the days (skipping counts
        steps += 1                           # the layout cannot divide or fit)
        count -= 1
        taken, plan = _days(request, count * node)
        if taken is None or plan is None:
            continue
        if taken > days:
            return GpusForDays(days, best[1], taken)
        best = (count, plan, taken)
    return GpusForDays(days, best[1], None)


def best_micro_batch(request: TrainingRequest, options: tuple[int, ...] = MICRO_BATCH_OPTIONS) -> TrainingPlan:
    """The fastest fitting plan over the micro-batch ``options`` (smaller on a tie); PlanError (the
    micro-batch 1 reason) when none fits."""
    plans: list[TrainingPlan] = []
    first_error: PlanError | None = None
    for b in options:
        try:
            plans.append(plan_training(replace(request, micro_batch=b)))
        except PlanError as exc:
            first_error = first_error or exc
    if not plans:
        assert first_error is not None
        raise first_error
    return min(plans, key=lambda p: (round(p.step_time_s, 9), p.layout.micro_batch))
