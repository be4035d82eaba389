"""Reliability: cluster MTBF, checkpoint size and write time, Young/Daly interval, goodput.

- Failures: each GPU fails independently at ``afr`` per year (default: the centre's planning figure, in
  :mod:`aiinfra.catalog.defaults`), so a job on
  n GPUs sees n x afr failures a year: MTBF = 8,760 h / (n x afr); failures of the job's nodes from
  other parts (``other_failures_per_year``, default 0) add to the rate.
- Checkpoint: bf16 weights (2 bytes/parameter) + fp32 master weights, Adam momentum and variance
  (12 bytes/parameter) = 14 bytes/parameter, written at the storage's aggregate bandwidth.
- Interval: Young (1974) sqrt(2 d M); Daly (2006) higher-order
  sqrt(2 d M) (1 + sqrt(d / (2 M)) / 3 + d / (18 M)) - d for d < 2 M, else M.
- Interruptions from all causes: a job stops for more than its GPUs failing (host, network,
  storage, software, and planned maintenance). Given ``interruptions_per_gpu_year`` (unexpected
  interruptions, all causes), the job's MTBF is 8,760 h / (n x rate) and the hardware AFR is
  reported beside it. The default rate is the Llama 3 405B run's: 419 unexpected interruptions in a
  54-day snapshot on 16,384 H100 GPUs (Meta, "The Llama 3 Herd of Models", 2024, section 3.3.4,
  Table 5), 0.173 per GPU-year, about 3.5 x the 5 % hardware AFR; plus 47 planned interruptions
  (firmware upgrades, configuration or dataset updates) in the same snapshot, 0.019 per GPU-year.
- Restart: requeue (the scheduler notices, requeues and places the job, on spares) plus restart
  (ranks start, the checkpoint loads); R = requeue + restart.
- Goodput (first order): 1 - d / (t + d) - (R + (t + d) / 2) / M - (R + d) / M_planned: checkpoint
  writes, per failure the restart time R plus half an interval of lost work, per planned stop a
  restart and a checkpoint written at the stop (no work lost). :mod:`aiinfra.plan.failures`
  adds the exact expectation of the same model and a Monte-Carlo of the whole run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aiinfra.catalog.defaults import (
    DEFAULT_GPU_ANNUAL_FAILURE_RATE,
    DEFAULT_INTERRUPTIONS_PER_GPU_YEAR,
    DEFAULT_JOB_RESTART_MINUTES,
    DEFAULT_PLANNED_PER_GPU_YEAR,  # noqa: F401 - the CLI's default, beside the unexpected rate
)
from aiinfra.plan.common import HOUR_S, YEAR_H, PlanError

CHECKPOINT_BYTES_PER_PARAM = 14
INTERRUPTION_SOURCE = "Llama 3 405B, 16,384 H100, 54 days: 419 unexpected + 47 planned (Meta 2024, Table 5)"
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
    #: unexpected interruptions per GPU-year, all causes (None: the hardware AFR is the job's rate)
    interruptions_per_gpu_year: float | None = None
    hardware_mtbf_s: float = 0.0  # GPUs (AFR) and other node parts only
    planned_per_gpu_year: float = 0.0
    requeue_s: float = 0.0  # from the failure to the job placed again (before restart_s)

    @property
    def failures_per_day(self) -> float:
        return 86_400.0 / self.mtbf_s

    @property
    def planned_per_day(self) -> float:
        return self.gpus * self.planned_per_gpu_year / (YEAR_H / 24)

    @property
    def interruption_cost_s(self) -> float:
        """Requeue and restart: the time an interruption costs besides lost work."""
        return self.requeue_s + self.restart_s

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
            "requeue_s": self.requeue_s,
            "interruptions_per_gpu_year": self.interruptions_per_gpu_year,
            "interruption_source": ("hardware AFR" if self.interruptions_per_gpu_year is None
                                    else "given" if self.interruptions_per_gpu_year != DEFAULT_INTERRUPTIONS_PER_GPU_YEAR
                                    else INTERRUPTION_SOURCE),
            "hardware_mtbf_s": self.hardware_mtbf_s,
            "hardware_failures_per_day": 86_400.0 / self.hardware_mtbf_s if self.hardware_mtbf_s else None,
            "planned_per_gpu_year": self.planned_per_gpu_year,
            "planned_per_day": self.planned_per_day,
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
    *,
    interruptions_per_gpu_year: float | None = None,
    planned_per_gpu_year: float = 0.0,
    requeue_s: float = 0.0,
) -> ReliabilityPlan:
    """Checkpointing for a job of ``params`` parameters on ``gpus`` GPUs (bandwidth in bytes/s);
    ``other_failures_per_year``: failures of its nodes from parts other than the GPUs.

    ``interruptions_per_gpu_year``: unexpected interruptions from all causes (e.g.
    DEFAULT_INTERRUPTIONS_PER_GPU_YEAR); None keeps the hardware rate as the job's.
    ``planned_per_gpu_year``: planned stops; ``requeue_s``: added to ``restart_s`` per interruption."""
    if storage_bandwidth_b_s <= 0:
        raise PlanError(f"storage bandwidth must be positive, got {storage_bandwidth_b_s} B/s")
    if (interruptions_per_gpu_year is not None and interruptions_per_gpu_year <= 0) or planned_per_gpu_year < 0 \
            or requeue_s < 0 or restart_s < 0:
        raise PlanError("interruptions per GPU-year must be positive, planned stops and requeue/restart times "
                        f"not negative, got {interruptions_per_gpu_year}, {planned_per_gpu_year}, {requeue_s}, "
                        f"{restart_s}")
    hardware = cluster_mtbf_s(gpus, annual_failure_rate, other_failures_per_year)
    mtbf = hardware if interruptions_per_gpu_year is None else (
        YEAR_H * HOUR_S / (gpus * interruptions_per_gpu_year + other_failures_per_year))
    size = params * bytes_per_param
    write = size / storage_bandwidth_b_s
    interval = daly_interval_s(write, mtbf)
    cost = requeue_s + restart_s
    good = goodput(interval, write, mtbf, cost)
    if planned_per_gpu_year:
        good = max(0.0, good - (cost + write) * gpus * planned_per_gpu_year / (YEAR_H * HOUR_S))
    return ReliabilityPlan(
        gpus, annual_failure_rate, mtbf, size, storage_bandwidth_b_s, write, young_interval_s(write, mtbf),
        interval, restart_s, good, other_failures_per_year, interruptions_per_gpu_year, hardware,
        planned_per_gpu_year, requeue_s,
    )
