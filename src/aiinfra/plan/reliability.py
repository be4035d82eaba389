"""Reliability: cluster MTBF, checkpoint size and write time, Young/Daly interval, goodput.

- Failures: each GPU fails independently at ``afr`` per year (default: the centre's planning figure, in
  :mod:`aiinfra.catalog.defaults`), so a job on
  n GPUs sees n x afr failures a year: MTBF = 8,760 h / (n x afr); failures of the job's nodes from
  other parts (``other_failures_per_year``, default 0) add to the rate.
- Checkpoint: bf16 weights (2 bytes/parameter) + fp32 master weights, Adam momentum and variance
  (12 bytes/parameter) = 14 bytes/parameter, written at the storage's aggregate bandwidth.
- Interval: Young (1974) sqrt(2 d M); Daly (2006) higher-order
  sqrt(2 d M) (1 + sqrt(d / (2 M)) / 3 + d / (18 M)) - d for d < 2 M, else M.
- Goodput (first order): 1 - d / (t + d) - (R + (t + d) / 2) / M: checkpoint writes, and per
  failure the restart time R plus half an interval of lost work. :mod:`aiinfra.plan.failures`
  adds the exact expectation of the same model and a Monte-Carlo of the whole run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aiinfra.catalog.defaults import DEFAULT_GPU_ANNUAL_FAILURE_RATE, DEFAULT_JOB_RESTART_MINUTES
from aiinfra.plan.common import HOUR_S, YEAR_H, PlanError

CHECKPOINT_BYTES_PER_PARAM = 14
DEFAULT_RESTART_S = DEFAULT_JOB_RESTART_MINUTES * 60  # detect the failure, requeue, reload the checkpoint
DEFAULT_AFR = DEFAULT_GPU_ANNUAL_FAILURE_RATE  # aiinfra.catalog.defaults


def cluster_mtbf_s(gpus: int, annual_failure_rate: float = DEFAULT_AFR, other_failures_per_year: float = 0.0) -> float:
    """Mean time between failures of a job on ``gpus`` GPUs, seconds; ``other_failures_per_year``:
    failures a year of the job's nodes from parts other than the GPUs."""
    if gpus <= 0 or not 0 < annual_failure_rate < 1 or other_failures_per_year < 0:
        raise PlanError(f"need a positive GPU count, an annual failure rate in (0, 1) and a non-negative rate of "
                        f"other failures, got {gpus}, {annual_failure_rate}, {other_failures_per_year}")
    return YEAR_H * HOUR_S / (gpus * annual_failure_rate + other_failures_per_year)


def young_interval_s(checkpoint_s: float, mtbf_s: float) -> float:
    return math.sqrt(2 * checkpoint_s * mtbf_s)


def daly_interval_s(checkpoint_s: float, mtbf_s: float) -> float:
    d, m = checkpoint_s, mtbf_s
    if d >= 2 * m:
        return m
    return math.sqrt(2 * d * m) * (1 + math.sqrt(d / (2 * m)) / 3 + d / (18 * m)) - d


def goodput(interval_s: float, checkpoint_s: float, mtbf_s: float, restart_s: float) -> float:
    waste = checkpoint_s / (interval_s + checkpoint_s) + (restart_s + (interval_s + checkpoint_s) / 2) / mtbf_s
    return max(0.0, 1.0 - waste)


@dataclass(frozen=True)
class ReliabilityPlan:
    gpus: int
    annual_failure_rate: float
    mtbf_s: float
    checkpoint_bytes: float
    storage_bandwidth_b_s: float
    checkpoint_write_s: float
    young_interval_s: float
    interval_s: float
    restart_s: float
    goodput: float
    other_failures_per_year: float = 0.0  # the job's nodes, parts other than GPUs

    @property
    def failures_per_day(self) -> float:
        return 86_400.0 / self.mtbf_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "reliability",
            "gpus": self.gpus,
            "annual_failure_rate": self.annual_failure_rate,
            "other_failures_per_year": self.other_failures_per_year,
            "mtbf_s": self.mtbf_s,
            "mtbf_h": self.mtbf_s / HOUR_S,
            "failures_per_day": self.failures_per_day,
            "checkpoint_bytes": round(self.checkpoint_bytes),
            "storage_bandwidth_b_s": self.storage_bandwidth_b_s,
            "checkpoint_write_s": self.checkpoint_write_s,
            "young_interval_s": self.young_interval_s,
            "checkpoint_interval_s": self.interval_s,
            "restart_s": self.restart_s,
            "goodput": self.goodput,
        }


def plan_reliability(
    gpus: int,
    params: float,
    storage_bandwidth_b_s: float,
    annual_failure_rate: float = DEFAULT_AFR,
    restart_s: float = DEFAULT_RESTART_S,
    bytes_per_param: float = CHECKPOINT_BYTES_PER_PARAM,
    other_failures_per_year: float = 0.0,
) -> ReliabilityPlan:
    """Checkpointing for a job of ``params`` parameters on ``gpus`` GPUs (bandwidth in bytes/s);
    ``other_failures_per_year``: failures of its nodes from parts other than the GPUs."""
    if storage_bandwidth_b_s <= 0:
        raise PlanError(f"storage bandwidth must be positive, got {storage_bandwidth_b_s} B/s")
    mtbf = cluster_mtbf_s(gpus, annual_failure_rate, other_failures_per_year)
    size = params * bytes_per_param
    write = size / storage_bandwidth_b_s
    interval = daly_interval_s(write, mtbf)
    return ReliabilityPlan(
        gpus, annual_failure_rate, mtbf, size, storage_bandwidth_b_s, write, young_interval_s(write, mtbf),
        interval, restart_s, goodput(interval, write, mtbf, restart_s), other_failures_per_year,
    )
