"""The whole environment's plan: every training job and serving deployment, reliability and power,
the workloads resolved from them (what each job and deployment runs), and failures (node failures,
spares, goodput under failures).

``plan_blueprint`` maps a validated :class:`aiinfra.spec.models.Blueprint` onto planner requests;
whatever cannot be planned becomes a :class:`aiinfra.errors.Problem` at the job's key path
instead of an exception, so validation reports every problem at once. ``plan_cluster`` adds the
resolved workloads and the failure plan; :mod:`aiinfra.pipeline` calls it once and hands the result
forward.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ClusterShell.NodeSet import NodeSet

from aiinfra.catalog.defaults import (
    DEFAULT_GPU_ANNUAL_FAILURE_RATE,
    DEFAULT_INTER_NODE_LINK,
    DEFAULT_INTERRUPTIONS_PER_GPU_YEAR,
    DEFAULT_JOB_RESTART_MINUTES,
    DEFAULT_NODE_NON_GPU_ANNUAL_FAILURE_RATE,
    DEFAULT_NODE_OVERHEAD_W,
    DEFAULT_PLANNED_PER_GPU_YEAR,
    DEFAULT_PUE,
)
from aiinfra.catalog.gpus import resolve_gpu
from aiinfra.errors import Level, Problem
from aiinfra.plan.claims import ClaimCheck, check_quantized_fits_claim, check_training_days_claim
from aiinfra.plan.common import PlanError
from aiinfra.plan.deployments import ResolvedDeployment, resolve_deployments
from aiinfra.plan.failures import FailurePlan, plan_failures
from aiinfra.plan.jobs import ResolvedJob, resolve_jobs
from aiinfra.plan.power import NodePower, PowerPlan, plan_power
from aiinfra.plan.reliability import ReliabilityPlan, plan_reliability
from aiinfra.plan.serving import ServingPlan, plan_serving, serving_request_from_deployment
from aiinfra.plan.training import TrainingPlan, plan_training, training_request_from_job
from aiinfra.spec.cluster import Cluster, Group
from aiinfra.spec.models import Blueprint


@dataclass(frozen=True)
class ClusterPlan:
    training: tuple[tuple[TrainingPlan, ReliabilityPlan | None], ...] = ()
    serving: tuple[ServingPlan, ...] = ()
    power: PowerPlan | None = None
    problems: tuple[Problem, ...] = field(default=())
    claims: tuple[ClaimCheck, ...] = ()
    #: what each planned job and deployment runs (layout, paths, NCCL, arguments), blueprint order
    jobs: tuple[ResolvedJob, ...] = ()
    deployments: tuple[ResolvedDeployment, ...] = ()
    #: node failures, spares per SU and each job's goodput under failures (plan_cluster only)
    failures: FailurePlan | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "training": [
                {**t.to_dict(), "reliability": r.to_dict() if r else None} for t, r in self.training
            ],
            "serving": [s.to_dict() for s in self.serving],
            "power": self.power.to_dict() if self.power else None,
            "claims": [c.to_dict() for c in self.claims],
            "jobs": [j.to_dict() for j in self.jobs],
            "deployments": [d.to_dict() for d in self.deployments],
            "failures": self.failures.to_dict() if self.failures else None,
            "problems": [
                {"path": p.key_path, "id": p.id, "level": p.level.value, "message": p.message, "hint": p.hint}
                for p in self.problems
            ],
        }


def _group_gpus(groups: Iterable[Group]) -> dict[str, tuple[str | None, int, int, int]]:
    """node group name -> (GPU model, GPUs per node, nodes a workload may take, nodes), read from the
    Cluster's groups: nodes in service with the group's spares held back, and every node not
    decommissioned."""
    return {g.name: (g.node_type.gpu.model if g.node_type.gpu else None, g.gpus_per_node, g.capacity, g.node_count)
            for g in groups}


def power_budget_problem(power: PowerPlan) -> Problem:
    """``plan-power-budget``: the nameplate (what the facility provisions for) or, without one for
    every node group, the typical draw exceeds the site's budget; both figures, and which tripped."""
    budget, typical, plate = power.budget_w / 1e3, power.it_power_w / 1e3, power.nameplate_it_power_w
    typical_text = (f"typical {typical:,.0f} kW (GPUs {power.gpu_power_w / 1e3:,.0f} kW at TDP + nodes "
                    f"{power.node_overhead_power_w / 1e3:,.0f} kW)")
    if power.budget_exceeded_by == "nameplate":
        message = (f"nameplate IT power {plate / 1e3:,.0f} kW (every node at its maximum input power, what "
                   f"PDUs and circuits must carry) exceeds the site budget {budget:,.0f} kW; "
                   f"{typical_text}{' also over' if typical > budget else ' within it'}")
        hint = "provision site.power_budget for the nameplate, or plan fewer nodes"
    else:
        why = ("no nameplate figure for every node group: the typical draw is judged" if plate is None else
               f"above the nameplate {plate / 1e3:,.0f} kW: the node overhead is more than the servers can draw")
        message = f"{typical_text} exceeds the site budget {budget:,.0f} kW ({why})"
        hint = "raise site.power_budget, lower node_overhead_w, or plan fewer nodes"
    return Problem(("site", "power_budget"), "plan-power-budget", message, Level.WARNING, hint=hint)


def plan_blueprint(bp: Blueprint, groups: Iterable[Group] | None = None) -> ClusterPlan:
    """Plan every job and deployment of a blueprint; problems instead of exceptions. ``groups``: the
    Cluster's node groups (built from the blueprint's hostlists when not given)."""
    if groups is None:
        groups = [Group(g, bp.node_types[g.type], tuple(NodeSet(g.hosts)), gpu_types=bp.catalog.gpus)
                  for g in bp.node_groups if g.type in bp.node_types]
    groups = _group_gpus(groups)
    problems: list[Problem] = []
    training: list[tuple[TrainingPlan, ReliabilityPlan | None]] = []
    serving: list[ServingPlan] = []
    link = bp.fabric.rate if bp.fabric is not None else DEFAULT_INTER_NODE_LINK
    lustre = bp.storage.parallel if bp.storage is not None else None  # Lustre or GPFS: its write bandwidth
    afr = bp.site.gpu_annual_failure_rate if bp.site is not None else DEFAULT_GPU_ANNUAL_FAILURE_RATE
    node_other_afr = (bp.site.node_non_gpu_annual_failure_rate if bp.site is not None
                      else DEFAULT_NODE_NON_GPU_ANNUAL_FAILURE_RATE)
    restart_s = (bp.site.job_restart_minutes if bp.site is not None else DEFAULT_JOB_RESTART_MINUTES) * 60

    for i, job in enumerate(bp.training):
        path = ("training", i)
        model_name, per_node, nodes, total = groups.get(job.node_group, (None, 0, 0, 0))
        if model_name is None:
            problems.append(Problem(path + ("node_group",), "plan-no-gpus",
                                    f"node group '{job.node_group}' has no GPUs to train on", hint=NO_GPUS_HINT))
            continue
        if job.nodes > total:
            problems.append(Problem(path + ("nodes",), "plan-too-many-nodes",
                                    f"job asks for {job.nodes} nodes but '{job.node_group}' has {total}",
                                    hint=f"ask for at most {total} nodes, or add hosts to '{job.node_group}'"))
            continue
        if job.nodes > nodes:  # nodes drained or down, or spares: the job waits, it is not wrong
            problems.append(Problem(path + ("nodes",), "train-waits-for-nodes",
                                    f"job asks for {job.nodes} nodes; '{job.node_group}' has {nodes} to give now "
                                    "(in service, spares held back): it pends until nodes return",
                                    Level.WARNING, hint="repair the nodes out of service, or ask for fewer nodes"))
        try:
            req = training_request_from_job(job, model_name, per_node, bp.catalog.models, site=bp.site,
                                            inter_node_link=link, custom_gpus=bp.catalog.gpus,
                                            fabric_sharp=bool(bp.fabric and bp.fabric.sharp))
            plan = plan_training(req)
        except KeyError as exc:
            problems.append(Problem(path + ("model",), "plan-unknown-name", str(exc.args[0]), hint=UNKNOWN_HINT))
            continue
        except PlanError as exc:
            problems.append(planner_problem(path, "plan-training", exc, TRAINING_HINT))
            continue
        rel = None
        if lustre is not None:
            site = bp.site
            rel = plan_reliability(
                req.gpus, req.model.params, lustre.bandwidth, afr, restart_s,
                other_failures_per_year=job.nodes * node_other_afr,
                interruptions_per_gpu_year=(site.job_interruptions_per_gpu_year if site
                                            else DEFAULT_INTERRUPTIONS_PER_GPU_YEAR),
                planned_per_gpu_year=site.planned_interruptions_per_gpu_year if site else DEFAULT_PLANNED_PER_GPU_YEAR,
                requeue_s=(site.job_requeue_minutes if site else 0.0) * 60)
        training.append((plan, rel))

    for i, dep in enumerate(bp.serving):
        path = ("serving", i)
        model_name, per_node, nodes, _total = groups.get(dep.node_group, (None, 0, 0, 0))
        if model_name is None:
            problems.append(Problem(path + ("node_group",), "plan-no-gpus",
                                    f"node group '{dep.node_group}' has no GPUs to serve on", hint=NO_GPUS_HINT))
            continue
        try:
            plan = plan_serving(serving_request_from_deployment(dep, model_name, per_node, bp.catalog.models,
                                                                custom_gpus=bp.catalog.gpus))
        except KeyError as exc:
            problems.append(Problem(path + ("model",), "plan-unknown-name", str(exc.args[0]), hint=UNKNOWN_HINT))
            continue
        except PlanError as exc:
            problems.append(planner_problem(path, "plan-serving", exc, SERVING_HINT))
            continue
        if plan.nodes > nodes:
            problems.append(Problem(path, "plan-serving-capacity",
                                    f"{plan.replicas} replicas need {plan.nodes} nodes but '{dep.node_group}' has {nodes}",
                                    Level.WARNING, hint="lower replicas or target_tokens_per_s, or add nodes"))
        serving.append(plan)

    power = None
    try:
        node_power = [NodePower(n, resolve_gpu(m, bp.catalog.gpus) if m else None, c) for m, c, _, n in groups.values()]
    except KeyError as exc:
        problems.append(Problem(("node_types",), "plan-unknown-name", str(exc.args[0]), hint=UNKNOWN_HINT))
        node_power = []
    if node_power:
        site = bp.site
        power = plan_power(
            node_power,
            node_overhead_w=site.node_overhead_w if site else DEFAULT_NODE_OVERHEAD_W,
            pue=site.pue if site else DEFAULT_PUE,
            budget_kw=site.power_budget if site else None,
        )
        if power.budget_exceeded_by is not None:
            problems.append(power_budget_problem(power))
    claims: list[ClaimCheck] = []
    for i, claim in enumerate(bp.claims):
        model_name, per_node, _, _ = groups.get(claim.node_group, (None, 0, 0, 0))
        if model_name is None:
            problems.append(Problem(("claims", i, "node_group"), "plan-no-gpus",
                                    f"node group '{claim.node_group}' has no GPUs", hint=NO_GPUS_HINT))
            continue
        try:
            if claim.kind == "training-days":
                claims.append(check_training_days_claim(claim.model, claim.nodes, per_node, model_name,
                                                        claim.days, claim.tokens))
            else:
                claims.append(check_quantized_fits_claim(claim.model, claim.quantization, model_name,
                                                         claim.weights / 1e9, claim.max_model_len))
        except KeyError as exc:
            problems.append(Problem(("claims", i, "model"), "plan-unknown-name", str(exc.args[0]), hint=UNKNOWN_HINT))
        except PlanError as exc:
            problems.append(planner_problem(("claims", i), "plan-claim", exc, "correct the claim's figures or remove it"))
    return ClusterPlan(tuple(training), tuple(serving), power, tuple(problems), tuple(claims))


NO_GPUS_HINT = "name a node group whose node type has a gpu: section"
UNKNOWN_HINT = "use one of the known names, or declare it under catalog.models (catalog.gpus for a GPU type)"
TRAINING_HINT = "change the job's tp, pp, micro_batch, global_batch or nodes; aiinfra size train shows layouts that fit"
SERVING_HINT = ("change tp, pp, quantization, kv_cache_dtype or max_model_len; aiinfra size serve shows what fits")


def planner_problem(path: tuple, id: str, exc: PlanError, default_hint: str) -> Problem:
    """A planner refusal as a Problem: the planner's own "try ..." advice is the hint when it gives one."""
    message, sep, advice = str(exc).partition("; try ")
    hint = f"try {advice}" if sep else default_hint
    return Problem(path, id, message, hint=hint)


def plan_cluster(cluster: Cluster) -> ClusterPlan:
    """The plan of a built Cluster with its workloads resolved and its failure plan. Pure: the
    pipeline computes it once and hands it to the checks, every renderer and the executors."""
    base = plan_blueprint(cluster.blueprint, cluster.groups.values())
    jobs = resolve_jobs(cluster, base.training)
    return replace(base, jobs=jobs, deployments=resolve_deployments(cluster, base.serving),
                   failures=plan_failures(cluster, jobs))
