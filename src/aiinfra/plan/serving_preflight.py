"""Serving preflight beyond the planner's arithmetic, as a ``cluster``-phase validator: the pinned
engine version has every flag a deployment needs, multi-node replicas take whole nodes inside one
SU, the checkpoint can be read (and staged), and all replicas fit their node group.
The checks live beside the renderer that emits the flags (:func:`aiinfra.render.serving.check_serving`)
so what is checked is exactly what is rendered."""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.errors import Problem
from aiinfra.spec.checks import validator

SERVING_ERRORS = {"serving-engine-version", "serving-engine-flag", "serving-layout", "serving-weights",
                  "serving-over-capacity", "serving-autoscaling"}


@validator("cluster")
def serving_preflight(cluster) -> Iterator[Problem]:
    from aiinfra.render.serving import check_serving

    yield from check_serving(cluster)
