"""Training jobs: sharding the framework cannot run (``blueprint`` phase, before the planner sizes
memory for it), and (``cluster`` phase) what the planner's preflight does not see (an image to
run, a place for checkpoints, framework limits), so that every job `validate` accepts is resolved
by the plan and rendered. Problem ids: :data:`PROBLEM_IDS` (documented in docs/validation.md)."""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.checks.registry import BlueprintView, validator
from aiinfra.errors import Level, Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.jobs import (
    DEFAULT_IMAGE_KEY,
    ResolvedJob,
    lustre_mount,
    partition_of,
    rendered_flags,
    under,
)
from aiinfra.plan.training import job_sharding_problem
from aiinfra.spec.cluster import Cluster
from aiinfra.spec.models import TrainingJob

PROBLEM_IDS = {
    "train-image-missing": Level.ERROR,
    "train-path-unset": Level.ERROR,
    "train-checkpoint-interval": Level.ERROR,
    "train-checkpoint-not-mounted": Level.ERROR,
    "train-checkpoint-outside-lustre": Level.WARNING,
    "train-no-partition": Level.ERROR,
    "train-deepspeed-layout": Level.ERROR,
    "train-deepspeed-fp8": Level.ERROR,
    "train-offload-needs-deepspeed": Level.ERROR,
    "train-extra-arg-conflict": Level.ERROR,
    "train-uneven-pipeline-vpp": Level.ERROR,
    "train-megatron-sharding": Level.ERROR,
}


def _problems(cluster: Cluster, plan: ClusterPlan, i: int, job: TrainingJob) -> Iterator[Problem]:
    path = ("training", i)
    group = cluster.groups.get(job.node_group)
    if group is None:
        return
    bp = cluster.blueprint
    key = job.image or DEFAULT_IMAGE_KEY[job.framework]
    if key not in bp.versions.images:
        yield Problem(path + ("image",), "train-image-missing",
                      f"no image to run the {job.framework} job: versions.images has no '{key}'",
                      hint=f"pin versions.images.{key} or set image: to a pinned key")
    lustre = lustre_mount(cluster)  # the chosen parallel file system's mount (Lustre or GPFS)
    fs, title = bp.storage.parallel_fs, bp.storage.parallel_title
    if lustre is None:
        unset = [k for k in ("checkpoint_dir", "data_path", "tokenizer") if getattr(job, k) is None]
        if job.framework == "deepspeed" and job.entrypoint is None:
            unset.append("entrypoint")
        for k in unset:
            yield Problem(path + (k,), "train-path-unset",
                          f"{k} is not set and there is no storage.{fs} to derive it from",
                          hint=f"set {k} or declare storage.{fs}")
    found = next(((p, r) for p, r in plan.training if p.request.name == job.name), None)
    if found is not None and job.checkpoint_interval_steps == "auto" and found[1] is None:
        yield Problem(path + ("checkpoint_interval_steps",), "train-checkpoint-interval",
                      f"the planner needs storage.{fs}.bandwidth for the Young/Daly checkpoint interval",
                      hint=f"declare storage.{fs} or set checkpoint_interval_steps")
    if job.checkpoint_dir and lustre and not under(job.checkpoint_dir, lustre):
        if group.scheduler == "kubernetes":
            yield Problem(path + ("checkpoint_dir",), "train-checkpoint-not-mounted",
                          f"{job.checkpoint_dir} is outside the {title} mount {lustre}, the only file system "
                          "the pods mount: checkpoints would die with the pod", hint=f"put it under {lustre}/")
        else:
            yield Problem(path + ("checkpoint_dir",), "train-checkpoint-outside-lustre",
                          f"{job.checkpoint_dir} is outside the {title} mount {lustre}: every node must see the "
                          "checkpoints to resume", Level.WARNING, hint=f"put it under {lustre}/")
    if group.scheduler == "slurm" and partition_of(cluster, group.name)[0] is None:
        yield Problem(path + ("node_group",), "train-no-partition",
                      f"node group '{group.name}' is in no Slurm partition: the job cannot be submitted",
                      hint="add the group to a partition in slurm.partitions")
    if job.framework == "deepspeed":
        if job.precision == "fp8":
            yield Problem(path + ("precision",), "train-deepspeed-fp8",
                          "a DeepSpeed config has no FP8 mode", hint="use precision: bf16 or framework: megatron")
    elif job.offload != "none":
        yield Problem(path + ("offload",), "train-offload-needs-deepspeed",
                      "offload is a DeepSpeed ZeRO option", hint="set framework: deepspeed or offload: none")
    if found is None:
        return  # the planner's preflight reports why
    planned = found[0]
    lay = planned.layout
    if job.framework == "deepspeed" and (lay.tp, lay.pp, lay.cp) != (1, 1, 1):
        yield Problem(path, "train-deepspeed-layout",
                      f"the planned layout {lay.short()} needs tensor, pipeline or context parallelism, which "
                      "the DeepSpeed launcher does not set up (ZeRO data parallelism only)",
                      hint="set tp: 1, pp: 1, cp: 1 (more ZeRO sharding or offload instead) or framework: megatron")
    if lay.vpp > 1 and planned.request.model.layers % (lay.pp * lay.vpp):
        yield Problem(path + ("virtual_pipeline_stages",), "train-uneven-pipeline-vpp",
                      f"{planned.request.model.layers} layers do not split into PP {lay.pp} x {lay.vpp} virtual "
                      "stages of equal size", hint="set virtual_pipeline_stages: 1 or a PP that divides the layers")


def _extra_arg_conflicts(resolved: ResolvedJob, i: int, job: TrainingJob) -> Iterator[Problem]:
    ours = rendered_flags(resolved.args[: len(resolved.args) - len(job.extra_args)])
    for j, arg in enumerate(job.extra_args):
        if arg.startswith("--") and arg.split("=")[0] in ours:
            yield Problem(("training", i, "extra_args", j), "train-extra-arg-conflict",
                          f"{arg.split('=')[0]} is rendered from the plan and the blueprint",
                          hint="change the job's keys (tp, micro_batch, ...) instead of passing it again")


@validator("blueprint")
def training_sharding_checks(view: BlueprintView) -> Iterator[Problem]:
    """ZeRO sharding the job's framework cannot run (Megatron-LM: the distributed optimizer only),
    refused before the planner sizes memory for it."""
    for i, job in enumerate(view.bp.training):
        why = job_sharding_problem(job)
        if why:
            key = "fsdp" if job.fsdp else "zero_stage"
            yield Problem(("training", i, key), "train-megatron-sharding", why,
                          hint="zero_stage: 1 with distributed_optimizer: true (or 0 without), or framework: "
                               "deepspeed for ZeRO stages 2 and 3")


@validator("cluster")
def training_job_checks(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    """What the planner's preflight does not see: images, paths, checkpointing, framework limits."""
    resolved = {j.name: j for j in plan.jobs}
    for i, job in enumerate(cluster.blueprint.training):
        found = list(_problems(cluster, plan, i, job))
        yield from found
        if job.extra_args and job.name in resolved and not any(p.level is Level.ERROR for p in found):
            yield from _extra_arg_conflicts(resolved[job.name], i, job)


