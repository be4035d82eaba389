"""Planning for failure: node failures, the spare pool of each scalable unit, and a training run's
goodput with requeue and restart, analytic and from a seeded Monte-Carlo of the whole run.

- Node failures: a node fails when one of its GPUs does (independent, each at the site's
  ``gpu_annual_failure_rate``, taken as a rate per GPU-year as :mod:`aiinfra.plan.reliability`
  takes it) or, at ``node_non_gpu_annual_failure_rate`` (default 0), from another part. A node's
  rate is GPUs per node x AFR + that; a group's is nodes x the node's; a month is a year / 12.
- Spares: the failures of an SU's nodes are a Poisson process of rate lambda = nodes x node rate;
  each failed node is out for a repair time of mean MTTR, independently (as many repairs at once
  as there are failed nodes). The nodes down at once are then, in steady state, Poisson with mean
  lambda x MTTR (the M/G/infinity queue: only the mean repair time matters). The spare pool s of
  the SU covers every node down while at most s are: s is the smallest with P(N > s) <= 1 - target.
- Goodput: the job's run is its work (training iterations x step time) cut into checkpoint
  intervals of tau (the rendered ``--save-interval`` x step time), each followed by a blocking
  checkpoint write d; failures strike the job's nodes as a Poisson process of mean gap M (the
  reliability plan's MTBF: the hardware rate, or the all-cause interruption rate where given) at
  any time, during computing, writing or restarting. A failure loses the interval under way (its
  checkpoint is incomplete) and costs a restart R (the reliability plan's requeue plus restart:
  scheduling on a spare, starting the ranks, loading the last checkpoint), itself lost and begun again if a failure strikes in it.
  Under this model (Daly 2006, "A higher order estimate of the optimum checkpoint interval for
  restart dumps", FGCS 22(3), the "complete" model whose optimum his interval estimates) an
  interval needing T = tau + d uninterrupted seconds takes in expectation M e^(R/M) (e^(T/M) - 1):
  e^(T/M) - 1 failures on average before it passes, each losing E[X | X < T] and bringing
  e^(R/M) - 1 failed restarts on average. Summed over the intervals it is the expected wall time;
  goodput = work / wall. The first-order figure of the reliability plan,
  1 - d/(tau + d) - (R + (tau + d)/2)/M, is its expansion for tau, d, R << M.
- Monte-Carlo: the same run, simulated failure by failure (exponential gaps from a seeded
  generator), so the analytic figure is checked against the run it describes, and the spread
  (p10/p90 of wall time and goodput over the runs) comes with it.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiinfra.catalog import defaults
from aiinfra.plan.common import DAY_S, HOUR_S, YEAR_H
from aiinfra.plan.jobs import ResolvedJob
from aiinfra.plan.reliability import goodput as first_order_goodput
from aiinfra.spec.cluster import Cluster

YEAR_S = YEAR_H * HOUR_S
MONTH_S = YEAR_S / 12
#: Monte-Carlo runs per training job in ``aiinfra plan`` and the fixed seed (same input, same numbers).
MONTE_CARLO_RUNS = 1000
MONTE_CARLO_SEED = 2006
#: The Monte-Carlo is skipped (the analytic figure stands alone) when its runs would see more
#: failures than this in all, e.g. an interval far longer than the MTBF.
MONTE_CARLO_MAX_FAILURES = 500_000
#: e^x beyond this overflows a float: the expected wall time is infinite for the planner's purposes.
_MAX_EXPONENT = 700.0


# ---------------------------------------------------------------- node failures and spares


def node_failures_per_year(gpus_per_node: int, gpu_annual_failure_rate: float,
                           non_gpu_annual_failure_rate: float = 0.0) -> float:
    """Failures of one node a year: any of its GPUs, or another part."""
    return gpus_per_node * gpu_annual_failure_rate + non_gpu_annual_failure_rate


def poisson_tail(mean: float, s: int) -> float:
    """P(N > s) for N Poisson with ``mean``: beyond the mode summed over k > s term by term (no
    1 - (1 - tiny) cancellation), the first term from its logarithm (no overflow for large means)."""
    if mean <= 0:
        return 0.0
    if s + 1 <= mean:  # the bulk: the tail is large, 1 - P(N <= s) loses nothing
        return max(0.0, 1.0 - sum(math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1)) for k in range(s + 1)))
    k = s + 1  # past the mode: the terms shrink from here
    term = math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1))
    total = 0.0
    while True:
        total += term
        k += 1
        term *= mean / k
        if term <= total * 1e-17:
            return min(total, 1.0)


def spares_for(mean_down: float, target_availability: float) -> int:
    """The fewest spares s with P(more than s nodes down at once) <= 1 - target."""
    s = 0
    while poisson_tail(mean_down, s) > 1 - target_availability:
        s += 1
    return s


@dataclass(frozen=True)
class GroupFailures:
    """One GPU node group: its failures and the spare pool of each of its scalable units."""

    name: str
    nodes: int
    gpus_per_node: int
    node_failures_per_year: float  # one node
    scalable_units: int
    nodes_per_su: int  # the largest SU of the group
    mean_down_per_su: float  # nodes of that SU down at once, on average
    spares_per_su: int  # declared
    recommended_spares_per_su: int  # for the site's target
    spare_coverage: float  # fraction of the time the declared spares cover every node down in the SU
    out_of_service: int  # drained or down now (the blueprint's nodes:)

    @property
    def failures_per_year(self) -> float:
        return self.nodes * self.node_failures_per_year

    @property
    def failures_per_month(self) -> float:
        return self.failures_per_year / 12

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nodes": self.nodes,
            "gpus_per_node": self.gpus_per_node,
            "node_failures_per_year": self.node_failures_per_year,
            "failures_per_year": self.failures_per_year,
            "failures_per_month": self.failures_per_month,
            "scalable_units": self.scalable_units,
            "nodes_per_su": self.nodes_per_su,
            "mean_down_per_su": self.mean_down_per_su,
            "spares_per_su": self.spares_per_su,
            "recommended_spares_per_su": self.recommended_spares_per_su,
            "spare_coverage": self.spare_coverage,
            "out_of_service": self.out_of_service,
        }


def plan_group_failures(name: str, nodes: int, gpus_per_node: int, su_sizes: Iterable[int], spares_per_su: int,
                        out_of_service: int, gpu_annual_failure_rate: float, non_gpu_annual_failure_rate: float,
                        repair_s: float, target_availability: float) -> GroupFailures:
    """``su_sizes``: nodes in each SU of the group (none: the whole group is one SU, as
    :attr:`aiinfra.spec.cluster.Group.spares` counts it)."""
    sizes = list(su_sizes) or [nodes]
    rate = node_failures_per_year(gpus_per_node, gpu_annual_failure_rate, non_gpu_annual_failure_rate)
    per_su = max(sizes)
    mean_down = per_su * rate * repair_s / YEAR_S
    return GroupFailures(
        name, nodes, gpus_per_node, rate, len(sizes), per_su, mean_down, spares_per_su,
        spares_for(mean_down, target_availability), 1 - poisson_tail(mean_down, spares_per_su), out_of_service,
    )


# ---------------------------------------------------------------- a training run under failures


@dataclass(frozen=True)
class Run:
    """A training run as the failure model sees it: ``full_intervals`` of ``interval_s`` of work,
    then ``last_s`` (shorter; 0: none), each followed by a checkpoint write of ``checkpoint_write_s``;
    failures every ``mtbf_s`` on average, each costing ``restart_s``."""

    full_intervals: int
    interval_s: float
    last_s: float
    checkpoint_write_s: float
    mtbf_s: float
    restart_s: float

    @property
    def work_s(self) -> float:
        return self.full_intervals * self.interval_s + self.last_s

    @property
    def intervals(self) -> int:
        return self.full_intervals + (1 if self.last_s > 0 else 0)


def expected_wall_s(run: Run) -> float:
    """Expected wall time of the run: sum over intervals of M e^(R/M) (e^((tau + d)/M) - 1)."""
    m, d = run.mtbf_s, run.checkpoint_write_s
    parts = [(run.full_intervals, run.interval_s + d)] + ([(1, run.last_s + d)] if run.last_s > 0 else [])
    if max(run.restart_s, *(t for _, t in parts)) / m > _MAX_EXPONENT:
        return math.inf
    return m * math.exp(run.restart_s / m) * sum(n * math.expm1(t / m) for n, t in parts)


def simulate_wall_s(run: Run, rng: random.Random) -> tuple[float, int]:
    """One run, failure by failure: (wall time, failures). From any moment the time to the next
    failure is exponential (memoryless), so a gap is drawn after each failure and at the start."""
    m, r = run.mtbf_s, run.restart_s
    span = run.interval_s + run.checkpoint_write_s
    last = run.last_s + run.checkpoint_write_s if run.last_s > 0 else 0.0
    remaining = run.full_intervals
    wall, failures = 0.0, 0
    rate, uniform, log = 1 / m, rng.random, math.log
    # rng.expovariate(rate), inlined (the same numbers: -log(1 - U) / rate): a run of a large job
    # draws hundreds of gaps, and the call was half the Monte-Carlo's time
    while True:
        gap = -log(1.0 - uniform()) / rate
        need = remaining * span + last
        if gap >= need:
            return wall + need, failures
        remaining -= min(int(gap // span), remaining)  # intervals checkpointed before the failure
        wall += gap  # those intervals and the lost part of the next one
        failures += 1
        while True:  # the restart, begun again after a failure in it
            gap = -log(1.0 - uniform()) / rate
            if gap >= r:
                wall += r
                break
            wall += gap
            failures += 1


def _nearest_rank(ordered: list[float], p: float) -> float:
    return ordered[max(math.ceil(p * len(ordered)) - 1, 0)]


@dataclass(frozen=True)
class Simulation:
    """The Monte-Carlo of a run: ``runs`` runs from ``seed``; percentiles by nearest rank."""

    runs: int
    seed: int
    work_s: float
    wall_mean_s: float
    wall_stderr_s: float  # standard error of the mean
    wall_p10_s: float
    wall_p90_s: float
    goodput_p10: float
    goodput_p90: float
    failures_mean: float

    @property
    def goodput(self) -> float:
        """Work / mean wall time: the estimate of work / expected wall time."""
        return self.work_s / self.wall_mean_s

    @property
    def goodput_stderr(self) -> float:
        """Its standard error (delta method)."""
        return self.goodput * self.wall_stderr_s / self.wall_mean_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "seed": self.seed,
            "wall_mean_s": self.wall_mean_s,
            "wall_stderr_s": self.wall_stderr_s,
            "wall_p10_s": self.wall_p10_s,
            "wall_p90_s": self.wall_p90_s,
            "wall_mean_days": self.wall_mean_s / DAY_S,
            "wall_p10_days": self.wall_p10_s / DAY_S,
            "wall_p90_days": self.wall_p90_s / DAY_S,
            "goodput": self.goodput,
            "goodput_stderr": self.goodput_stderr,
            "goodput_p10": self.goodput_p10,
            "goodput_p90": self.goodput_p90,
            "failures_mean": self.failures_mean,
        }


def simulate(run: Run, runs: int = MONTE_CARLO_RUNS, seed: int = MONTE_CARLO_SEED) -> Simulation | None:
    """``runs`` simulated runs; None when they would see more than ``MONTE_CARLO_MAX_FAILURES``
    failures in all (the expected wall time says enough then)."""
    if runs < 2:
        raise ValueError(f"a Monte-Carlo needs at least 2 runs, got {runs}")
    expected = expected_wall_s(run)
    if not math.isfinite(expected) or runs * expected / run.mtbf_s > MONTE_CARLO_MAX_FAILURES:
        return None
    rng = random.Random(seed)
    walls: list[float] = []
    failures = 0
    for _ in range(runs):
        wall, n = simulate_wall_s(run, rng)
        walls.append(wall)
        failures += n
    work = run.work_s
    mean = statistics.fmean(walls)
    ordered = sorted(walls)
    good = sorted(work / w for w in walls)
    return Simulation(
        runs, seed, work, mean, statistics.stdev(walls, mean) / math.sqrt(runs),
        _nearest_rank(ordered, 0.1), _nearest_rank(ordered, 0.9),
        _nearest_rank(good, 0.1), _nearest_rank(good, 0.9), failures / runs,
    )


@dataclass(frozen=True)
class JobGoodput:
    """A training job's run under failures: first-order, expected and simulated goodput."""

    name: str
    nodes: int
    run: Run
    first_order_goodput: float  # the reliability plan's formula at the job's own interval
    expected_wall_s: float
    simulation: Simulation | None

    @property
    def expected_goodput(self) -> float:
        return self.run.work_s / self.expected_wall_s

    @property
    def expected_failures(self) -> float:
        """Failures over the run: a Poisson process over the wall time, so E[wall] / M."""
        return self.expected_wall_s / self.run.mtbf_s

    def to_dict(self) -> dict[str, Any]:
        r = self.run
        finite = math.isfinite(self.expected_wall_s)
        return {
            "name": self.name,
            "nodes": self.nodes,
            "mtbf_s": r.mtbf_s,
            "checkpoint_interval_s": r.interval_s,
            "checkpoint_write_s": r.checkpoint_write_s,
            "restart_s": r.restart_s,
            "intervals": r.intervals,
            "work_s": r.work_s,
            "work_days": r.work_s / DAY_S,
            "first_order_goodput": self.first_order_goodput,
            "expected_wall_s": self.expected_wall_s if finite else None,
            "expected_wall_days": self.expected_wall_s / DAY_S if finite else None,
            "expected_goodput": self.expected_goodput,
            "expected_failures": self.expected_failures if finite else None,
            "monte_carlo": self.simulation.to_dict() if self.simulation else None,
        }


def plan_job_goodput(name: str, nodes: int, run: Run, runs: int = MONTE_CARLO_RUNS,
                     seed: int = MONTE_CARLO_SEED) -> JobGoodput:
    return JobGoodput(
        name, nodes, run,
        first_order_goodput(run.interval_s, run.checkpoint_write_s, run.mtbf_s, run.restart_s),
        expected_wall_s(run), simulate(run, runs, seed),
    )


def run_of_job(job: ResolvedJob) -> Run | None:
    """The run a resolved job renders: its iterations, ``--save-interval`` and step time, the
    reliability plan's write time, MTBF and restart. None without a reliability plan (no Lustre)."""
    rel, ckpt = job.reliability, job.checkpoint
    if rel is None or ckpt.write_s is None or job.train_iters <= 0:
        return None
    step = job.plan.step_time_s
    full, rest = divmod(job.train_iters, ckpt.interval_steps)
    return Run(full, ckpt.interval_steps * step, rest * step, ckpt.write_s, rel.mtbf_s, rel.interruption_cost_s)


# ---------------------------------------------------------------- the environment


@dataclass(frozen=True)
class FailurePlan:
    """Failures of the environment's GPU node groups, their spares, and each training job's goodput."""

    gpu_annual_failure_rate: float
    node_non_gpu_annual_failure_rate: float
    node_repair_s: float
    spare_target_availability: float
    restart_s: float
    groups: tuple[GroupFailures, ...]
    training: tuple[JobGoodput, ...]

    @property
    def failures_per_month(self) -> float:
        return sum(g.failures_per_month for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "failures",
            "gpu_annual_failure_rate": self.gpu_annual_failure_rate,
            "node_non_gpu_annual_failure_rate": self.node_non_gpu_annual_failure_rate,
            "node_repair_s": self.node_repair_s,
            "node_repair_days": self.node_repair_s / DAY_S,
            "spare_target_availability": self.spare_target_availability,
            "restart_s": self.restart_s,
            "node_failures_per_month": self.failures_per_month,
            "groups": [g.to_dict() for g in self.groups],
            "training": [j.to_dict() for j in self.training],
        }


def plan_failures(cluster: Cluster, jobs: Iterable[ResolvedJob], runs: int = MONTE_CARLO_RUNS,
                  seed: int = MONTE_CARLO_SEED) -> FailurePlan:
    """The failure plan of a built Cluster and its resolved jobs (the site's inputs, else the defaults)."""
    site = cluster.blueprint.site
    afr = site.gpu_annual_failure_rate if site else defaults.DEFAULT_GPU_ANNUAL_FAILURE_RATE
    other = site.node_non_gpu_annual_failure_rate if site else defaults.DEFAULT_NODE_NON_GPU_ANNUAL_FAILURE_RATE
    repair_s = (site.node_repair_days if site else defaults.DEFAULT_NODE_REPAIR_DAYS) * DAY_S
    target = site.spare_target_availability if site else defaults.DEFAULT_SPARE_TARGET_AVAILABILITY
    restart_s = (site.job_restart_minutes if site else defaults.DEFAULT_JOB_RESTART_MINUTES) * 60
    groups = []
    for g in cluster.groups.values():
        if not g.gpus_per_node or not g.hosts:
            continue
        sus = Counter(cluster.hosts[h].su for h in g.hosts if h in cluster.hosts and cluster.hosts[h].su is not None)
        groups.append(plan_group_failures(g.name, len(g.hosts), g.gpus_per_node, sus.values(), g.spec.spares_per_su,
                                          len(g.hosts) - len(g.in_service), afr, other, repair_s, target))
    training = []
    for job in jobs:
        run = run_of_job(job)
        if run is not None:
            training.append(plan_job_goodput(job.spec.name, job.spec.nodes, run, runs, seed))
    return FailurePlan(afr, other, repair_s, target, restart_s, tuple(groups), tuple(training))
