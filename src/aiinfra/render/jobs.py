"""Training jobs under ``manifests/<env>/jobs/<job>/``: Slurm batch scripts or Kubeflow PyTorchJobs.

Every number comes from the planner (:func:`aiinfra.plan.cluster.plan_cluster`): the parallel
layout, the batch arithmetic, the step time and the Young/Daly checkpoint interval. This module
turns them into launcher settings (:class:`JobModel`), framework arguments (Megatron-LM) or a
DeepSpeed JSON, and prints them through ``templates/jobs/``. The NCCL environment comes from
:func:`aiinfra.render.nccl.nccl_env` (the same function for every launcher).

Files per job (the node group's scheduler decides):

- Slurm: ``sbatch.sh`` (self-contained: resources, container, NCCL, checkpoint pruning, the
  time-limit signal, requeue, resume) and, for DeepSpeed, ``deepspeed.json``.
- Kubernetes: ``pytorchjob.yaml`` (a ConfigMap with the launch script and framework config, and
  the PyTorchJob) and ``kustomization.yaml``. Jobs are submitted (``kubectl create -k``), not
  synced: they are outside the Argo CD tree ``k8s/``.

What the planner's preflight does not see (an image to run, a place for checkpoints, framework
limits) is checked by the ``cluster``-phase validator :func:`training_job_checks`; its problem
ids are listed in :data:`PROBLEM_IDS` and documented in docs/validation.md.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from aiinfra.catalog import k8s_resources
from aiinfra.catalog.models import LlmArchitecture
from aiinfra.errors import Level, Problem
from aiinfra.plan.cluster import plan_cluster
from aiinfra.plan.reliability import ReliabilityPlan
from aiinfra.plan.training import TrainingPlan, stage_layer_counts
from aiinfra.render import Artifacts, renderer
from aiinfra.render.k8s_topology import GPU_TAINT
from aiinfra.render.nccl import nccl_env
from aiinfra.render.templates import StableDumper, dump_json, fold, render_template
from aiinfra.spec.checks import validator
from aiinfra.spec.cluster import Cluster, Group, su_name
from aiinfra.spec.models import TrainingJob

# ---------------------------------------------------------------- defaults and constants

#: versions.images key used when a job names no image.
DEFAULT_IMAGE_KEY = {"megatron": "megatron", "deepspeed": "deepspeed"}
#: Megatron-LM's GPT pre-training script inside the image (a Megatron-LM checkout at /opt/megatron-lm).
MEGATRON_ENTRYPOINT = "/opt/megatron-lm/pretrain_gpt.py"
#: Megatron pads the vocabulary to a multiple of this times TP (Llama 3's 128,256 = 1,002 x 128).
MAKE_VOCAB_SIZE_DIVISIBLE_BY = 128
#: Checkpoint layout of each framework: the tracker file naming the newest complete checkpoint and
#: the prefix of checkpoint folders (Megatron: latest_checkpointed_iteration.txt, iter_0000125/;
#: DeepSpeed: latest holding the tag, global_step125/).
CHECKPOINT_LAYOUT = {
    "megatron": ("latest_checkpointed_iteration.txt", "iter_"),
    "deepspeed": ("latest", "global_step"),
}
#: Seconds between two passes of the checkpoint pruner on the batch host / rank-0 pod.
PRUNE_EVERY_S = 600
#: Slurm delivers --signal up to 60 s early (its event resolution); the lead time covers that, the
#: step in flight and one checkpoint write, twice, and never less than five minutes.
SIGNAL_RESOLUTION_S = 60
MIN_SIGNAL_LEAD_S = 300
#: Port of the rendezvous on the first node: 20000 + job id mod 20000 (two jobs on one node differ).
MASTER_PORT_BASE = 20000
#: Inside pods: where the ConfigMap with the launch script and framework config is mounted.
POD_JOB_DIR = "/etc/aiinfra/job"
#: /dev/shm of a training pod (NCCL's shared-memory transport, data-loader workers): a fraction of RAM.
SHM_FRACTION = 0.25
#: Pod restarts before the PyTorchJob fails (each restart resumes from the newest checkpoint).
POD_BACKOFF_LIMIT = 3
#: Kueue topology-aware scheduling: keep a job's pods inside one scalable unit when it can.
KUEUE_PREFERRED_TOPOLOGY = "kueue.x-k8s.io/podset-preferred-topology"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

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
}


# ---------------------------------------------------------------- the model of one job


@dataclass(frozen=True)
class Checkpointing:
    dir: str
    interval_steps: int
    interval_s: float | None  # the planner's Young/Daly interval (None: given in steps)
    write_s: float | None
    keep: int
    source: str  # planner | blueprint
    tracker: str
    prefix: str


@dataclass(frozen=True)
class JobModel:
    """Everything a job's files print; built from the blueprint and the plan only."""

    env: str
    source: str
    spec: TrainingJob
    group: Group
    plan: TrainingPlan
    reliability: ReliabilityPlan | None
    scheduler: str
    image_key: str
    image: str
    partition: str | None
    time_limit: str | None
    signal_lead_s: int
    switches: int | None
    su_nodes: int | None
    tasks_per_node: int  # tasks of the training step per node
    alloc_tasks_per_node: int  # tasks of the allocation per node (fewer when a node has fewer CPUs: overcommit)
    cpus_per_task: int
    overcommit: bool
    lustre_mountpoint: str | None
    checkpoint: Checkpointing
    train_iters: int
    entrypoint: str
    nccl: dict[str, str]
    env_vars: dict[str, str]
    args: list[str] = field(default_factory=list)  # framework arguments (Megatron) or script arguments
    deepspeed: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def nodes(self) -> int:
        return self.spec.nodes

    @property
    def gpus_per_node(self) -> int:
        return self.group.gpus_per_node

    @property
    def world_size(self) -> int:
        return self.spec.nodes * self.group.gpus_per_node

    @property
    def framework(self) -> str:
        return self.spec.framework

    @property
    def model(self) -> LlmArchitecture:
        return self.plan.request.model


# ---------------------------------------------------------------- pieces (pure functions)


def enroot_image(ref: str) -> str:
    """An image reference as pyxis/enroot want it: the registry separated by '#'.

    ``nvcr.io/nvidia/pytorch:25.04-py3`` -> ``nvcr.io#nvidia/pytorch:25.04-py3``; an image of the
    default registry (``vllm/vllm-openai:v0.8.5``) stays as it is.
    """
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost") and "#" not in ref:
        return f"{first}#{rest}"
    return ref


def checkpoint_interval_steps(interval_s: float, step_time_s: float) -> int:
    """Whole steps between checkpoints: the Young/Daly interval rounded down (never 0)."""
    return max(1, math.floor(interval_s / step_time_s))


def signal_lead_s(step_time_s: float, write_s: float | None) -> int:
    """Seconds before the time limit at which Slurm signals the batch shell (``--signal=B:USR1@N``)."""
    need = SIGNAL_RESOLUTION_S + 2 * (step_time_s + (write_s or 0.0))
    return max(MIN_SIGNAL_LEAD_S, math.ceil(need / 60) * 60)


def switches_for(nodes: int, su_nodes: int) -> int:
    """Leaf switches (SUs in topology.conf) the job needs at least: ceil(nodes / nodes per SU)."""
    return math.ceil(nodes / su_nodes)


def _lustre(cluster: Cluster) -> str | None:
    lustre = cluster.blueprint.storage.lustre
    return lustre.mountpoint.rstrip("/") if lustre is not None else None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _partition(cluster: Cluster, group: str) -> tuple[str | None, str | None]:
    slurm = cluster.blueprint.slurm
    if slurm is None:
        return None, None
    for part in slurm.partitions:
        if group in part.node_groups:
            return part.name, part.max_time
    return None, None


def _plan_of(cluster: Cluster, name: str) -> tuple[TrainingPlan, ReliabilityPlan | None] | None:
    for plan, rel in plan_cluster(cluster).training:
        if plan.request.name == name:
            return plan, rel
    return None


def megatron_args(plan: TrainingPlan, job: TrainingJob, ckpt: Checkpointing, train_iters: int,
                  data_path: str, tokenizer: str) -> list[str]:
    """Megatron-LM arguments from the plan's layout and the catalog's model, one list."""
    r, lay, m = plan.request, plan.layout, plan.request.model
    args = [
        "--tensor-model-parallel-size", str(lay.tp),
        "--pipeline-model-parallel-size", str(lay.pp),
    ]
    counts = stage_layer_counts(m.layers, lay.pp)
    if lay.pp > 1 and len(set(counts)) > 1:
        args += ["--decoder-first-pipeline-num-layers", str(counts[0]),
                 "--decoder-last-pipeline-num-layers", str(counts[-1])]
    if lay.vpp > 1:
        args += ["--num-layers-per-virtual-pipeline-stage", str(m.layers // (lay.pp * lay.vpp))]
    args += ["--context-parallel-size", str(lay.cp)]
    if r.sequence_parallel and lay.tp > 1:
        args.append("--sequence-parallel")
    if r.distributed_optimizer:
        args.append("--use-distributed-optimizer")
    if lay.recompute == "selective":
        args.append("--recompute-activations")
    elif lay.recompute == "full":
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
    args += [
        "--micro-batch-size", str(lay.micro_batch),
        "--global-batch-size", str(lay.global_batch),
        "--seq-length", str(r.seq_len),
        "--max-position-embeddings", str(max(r.seq_len, m.learned_positions)),
        "--num-layers", str(m.layers),
        "--hidden-size", str(m.hidden),
        "--ffn-hidden-size", str(m.ffn_hidden),
        "--num-attention-heads", str(m.heads),
    ]
    if m.kv_heads != m.heads:
        args += ["--group-query-attention", "--num-query-groups", str(m.kv_heads)]
    if m.gated_mlp:
        args.append("--swiglu")
    if m.norm == "rmsnorm":
        args += ["--normalization", "RMSNorm"]
    if not m.linear_bias:
        args.append("--disable-bias-linear")
    args += ["--position-embedding-type", "learned_absolute" if m.learned_positions else "rope"]
    if not m.tied_embeddings:
        args.append("--untie-embeddings-and-output-weights")
    if not m.dropout:
        args += ["--attention-dropout", "0.0", "--hidden-dropout", "0.0"]
    args += [
        "--tokenizer-type", "HuggingFaceTokenizer",
        "--tokenizer-model", tokenizer,
        "--make-vocab-size-divisible-by", str(MAKE_VOCAB_SIZE_DIVISIBLE_BY),
        "--data-path", data_path,
    ]
    args.append("--bf16")
    if r.precision == "fp8":
        args += ["--fp8-format", "hybrid", "--fp8-amax-history-len", "1024", "--fp8-amax-compute-algo", "max"]
    args += [
        "--train-iters", str(train_iters),
        "--save", ckpt.dir,
        "--load", ckpt.dir,
        "--save-interval", str(ckpt.interval_steps),
        "--exit-signal-handler",
    ]
    return args + list(job.extra_args)


def deepspeed_config(plan: TrainingPlan, job: TrainingJob) -> dict[str, Any]:
    """DeepSpeed JSON: batch sizes (train_batch_size = micro x accumulation x DP), ZeRO, bf16."""
    lay = plan.layout
    accumulation = lay.num_microbatches
    assert lay.micro_batch * accumulation * lay.dp == lay.global_batch, "the planner checks the batch divides"
    zero: dict[str, Any] = {"stage": lay.zero_stage, "overlap_comm": True, "contiguous_gradients": True}
    if job.offload == "cpu" and lay.zero_stage >= 1:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if lay.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if lay.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_batch_size": lay.global_batch,
        "train_micro_batch_size_per_gpu": lay.micro_batch,
        "gradient_accumulation_steps": accumulation,
        "bf16": {"enabled": True},
        "zero_optimization": zero,
        "steps_per_print": 10,
        "wall_clock_breakdown": False,
    }


def deepspeed_args(plan: TrainingPlan, job: TrainingJob, ckpt: Checkpointing, train_iters: int, config_path: str,
                   data_path: str, tokenizer: str) -> list[str]:
    """Arguments of a DeepSpeed training script (``deepspeed.add_config_arguments`` + aiinfra's contract)."""
    args = [
        "--deepspeed", "--deepspeed_config", config_path,
        "--seq-length", str(plan.request.seq_len),
        "--train-iters", str(train_iters),
        "--data-path", data_path,
        "--tokenizer", tokenizer,
        "--save", ckpt.dir,
        "--load", ckpt.dir,
        "--save-interval", str(ckpt.interval_steps),
    ]
    if plan.layout.recompute != "none":
        args.append("--gradient-checkpointing")
    return args + list(job.extra_args)


def rendered_flags(args: list[str]) -> set[str]:
    return {a.split("=")[0] for a in args if a.startswith("--")}


# ---------------------------------------------------------------- problems (the validator)


def _problems(cluster: Cluster, i: int, job: TrainingJob) -> Iterator[Problem]:
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
    lustre = _lustre(cluster)
    if lustre is None:
        unset = [k for k in ("checkpoint_dir", "data_path", "tokenizer") if getattr(job, k) is None]
        if job.framework == "deepspeed" and job.entrypoint is None:
            unset.append("entrypoint")
        for k in unset:
            yield Problem(path + (k,), "train-path-unset",
                          f"{k} is not set and there is no storage.lustre to derive it from",
                          hint=f"set {k} or declare storage.lustre")
    found = _plan_of(cluster, job.name)
    if found is not None and job.checkpoint_interval_steps == "auto" and found[1] is None:
        yield Problem(path + ("checkpoint_interval_steps",), "train-checkpoint-interval",
                      "the planner needs storage.lustre.bandwidth for the Young/Daly checkpoint interval",
                      hint="declare storage.lustre or set checkpoint_interval_steps")
    if job.checkpoint_dir and lustre and not _under(job.checkpoint_dir, lustre):
        if group.scheduler == "kubernetes":
            yield Problem(path + ("checkpoint_dir",), "train-checkpoint-not-mounted",
                          f"{job.checkpoint_dir} is outside the Lustre mount {lustre}, the only file system "
                          "the pods mount: checkpoints would die with the pod", hint=f"put it under {lustre}/")
        else:
            yield Problem(path + ("checkpoint_dir",), "train-checkpoint-outside-lustre",
                          f"{job.checkpoint_dir} is outside the Lustre mount {lustre}: every node must see the "
                          "checkpoints to resume", Level.WARNING, hint=f"put it under {lustre}/")
    if group.scheduler == "slurm" and _partition(cluster, group.name)[0] is None:
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
    plan = found[0]
    lay = plan.layout
    if job.framework == "deepspeed" and (lay.tp, lay.pp, lay.cp) != (1, 1, 1):
        yield Problem(path, "train-deepspeed-layout",
                      f"the planned layout {lay.short()} needs tensor, pipeline or context parallelism, which "
                      "the DeepSpeed launcher does not set up (ZeRO data parallelism only)",
                      hint="set tp: 1, pp: 1, cp: 1 (more ZeRO sharding or offload instead) or framework: megatron")
    if lay.vpp > 1 and plan.request.model.layers % (lay.pp * lay.vpp):
        yield Problem(path + ("virtual_pipeline_stages",), "train-uneven-pipeline-vpp",
                      f"{plan.request.model.layers} layers do not split into PP {lay.pp} x {lay.vpp} virtual "
                      "stages of equal size", hint="set virtual_pipeline_stages: 1 or a PP that divides the layers")


def _extra_arg_conflicts(cluster: Cluster, i: int, job: TrainingJob) -> Iterator[Problem]:
    model = job_model(cluster, i)
    ours = rendered_flags(model.args[: len(model.args) - len(job.extra_args)])
    for j, arg in enumerate(job.extra_args):
        if arg.startswith("--") and arg.split("=")[0] in ours:
            yield Problem(("training", i, "extra_args", j), "train-extra-arg-conflict",
                          f"{arg.split('=')[0]} is rendered from the plan and the blueprint",
                          hint="change the job's keys (tp, micro_batch, ...) instead of passing it again")


@validator("cluster")
def training_job_checks(cluster: Cluster) -> Iterator[Problem]:
    """What the planner's preflight does not see: images, paths, checkpointing, framework limits."""
    planned = {plan.request.name for plan, _ in plan_cluster(cluster).training}
    for i, job in enumerate(cluster.blueprint.training):
        found = list(_problems(cluster, i, job))
        yield from found
        if job.extra_args and job.name in planned and not any(p.level is Level.ERROR for p in found):
            yield from _extra_arg_conflicts(cluster, i, job)


# ---------------------------------------------------------------- building the model


def job_model(cluster: Cluster, index: int) -> JobModel:
    """The launch model of ``training[index]`` (the blueprint passed validation)."""
    bp = cluster.blueprint
    job = bp.training[index]
    group = cluster.groups[job.node_group]
    found = _plan_of(cluster, job.name)
    if found is None:
        raise ValueError(f"training job '{job.name}' has no plan (validation reports why)")
    plan, rel = found
    lustre = _lustre(cluster)
    model_name = job.model
    ckpt_dir = job.checkpoint_dir or f"{lustre}/checkpoints/{cluster.env}/{job.name}"
    data_path = job.data_path or f"{lustre}/datasets/{model_name}/text_document"
    tokenizer = job.tokenizer or f"{lustre}/models/{model_name}/tokenizer"
    if job.checkpoint_interval_steps != "auto":
        steps, interval_s, source = int(job.checkpoint_interval_steps), None, "blueprint"
    else:
        assert rel is not None, "validated: a planner interval needs Lustre"
        steps, interval_s, source = checkpoint_interval_steps(rel.interval_s, plan.step_time_s), rel.interval_s, "planner"
    tracker, prefix = CHECKPOINT_LAYOUT[job.framework]
    ckpt = Checkpointing(ckpt_dir, steps, interval_s, rel.checkpoint_write_s if rel else None, job.checkpoint_keep,
                         source, tracker, prefix)
    train_iters = math.ceil(plan.request.tokens / plan.tokens_per_step) if plan.request.tokens else 0
    image_key = job.image or DEFAULT_IMAGE_KEY[job.framework]
    partition, max_time = _partition(cluster, group.name)
    fabric = bp.fabric
    cpu = group.node_type.cpu
    cpus = cpu.sockets * cpu.cores_per_socket * cpu.threads_per_core
    in_pod = group.scheduler == "kubernetes"
    tasks = group.gpus_per_node if (job.launcher == "srun" and not in_pod) else 1
    per_task = cpus // tasks
    env_vars = {"OMP_NUM_THREADS": str(max(1, cpus // group.gpus_per_node))}
    if job.framework == "megatron":
        env_vars["CUDA_DEVICE_MAX_CONNECTIONS"] = "1"  # Megatron's TP/SP communication overlap needs one stream
    if job.framework == "megatron":
        entry = job.entrypoint or MEGATRON_ENTRYPOINT
        args = megatron_args(plan, job, ckpt, train_iters, data_path, tokenizer)
        ds = None
    else:
        entry = job.entrypoint or f"{lustre}/code/{job.name}/train.py"
        config_path = f"{POD_JOB_DIR}/deepspeed.json" if in_pod else f"{ckpt_dir}/deepspeed.json"
        args = deepspeed_args(plan, job, ckpt, train_iters, config_path, data_path, tokenizer)
        ds = deepspeed_config(plan, job)
    return JobModel(
        env=cluster.env, source=cluster.source, spec=job, group=group, plan=plan, reliability=rel,
        scheduler=group.scheduler, image_key=image_key, image=bp.versions.images.get(image_key, ""),
        partition=partition,
        time_limit=None if max_time in (None, "UNLIMITED", "INFINITE") else max_time,
        signal_lead_s=signal_lead_s(plan.step_time_s, ckpt.write_s),
        switches=switches_for(job.nodes, fabric.su_nodes) if fabric is not None else None,
        su_nodes=fabric.su_nodes if fabric is not None else None,
        tasks_per_node=tasks, alloc_tasks_per_node=min(tasks, cpus), cpus_per_task=max(1, per_task),
        overcommit=per_task < 1,
        lustre_mountpoint=lustre, checkpoint=ckpt, train_iters=train_iters, entrypoint=entry,
        nccl=nccl_env(cluster, group, in_pod=in_pod), env_vars=env_vars, args=args, deepspeed=ds,
    )


def job_models(cluster: Cluster) -> list[JobModel]:
    if "job_models" not in cluster.cache:
        cluster.cache["job_models"] = [job_model(cluster, i) for i in range(len(cluster.blueprint.training))]
    return cluster.cache["job_models"]


# ---------------------------------------------------------------- rendering


def _q(value: object) -> str:
    """Shell-quoted; values with '=' or '^' quoted too (NCCL_IB_HCA='=mlx5_0:1,...' reads better)."""
    text = str(value)
    quoted = shlex.quote(text)
    return f"'{text}'" if quoted == text and any(c in text for c in "=^") else quoted


def arg_lines(args: list[str]) -> list[str]:
    """Shell-quoted arguments, one flag with its values per line."""
    lines: list[list[str]] = []
    for a in args:
        if a.startswith("--") or not lines:
            lines.append([_q(a)])
        else:
            lines[-1].append(_q(a))
    return [" ".join(words) for words in lines]


def _context(m: JobModel) -> dict[str, Any]:
    return {"m": m, "q": _q, "prune_every_s": PRUNE_EVERY_S, "master_port_base": MASTER_PORT_BASE,
            "pod_job_dir": POD_JOB_DIR, "arg_lines": arg_lines(m.args),
            "container_image": enroot_image(m.image), "container_mounts": ",".join(container_mounts(m)),
            "default_program": default_program(m),
            "deepspeed_json": dump_json(m.deepspeed).rstrip("\n") if m.deepspeed is not None else ""}


def container_mounts(m: JobModel) -> list[str]:
    """pyxis --container-mounts: the Lustre mount and the NCCL topology file (same paths inside)."""
    paths = [m.lustre_mountpoint] if m.lustre_mountpoint else []
    if m.lustre_mountpoint is None or not _under(m.checkpoint.dir, m.lustre_mountpoint):
        paths.append(m.checkpoint.dir)
    topo = m.nccl.get("NCCL_TOPO_FILE")
    if topo:
        paths.append(topo)
    return [f"{p}:{p}" for p in paths]


def default_program(m: JobModel) -> str:
    """What each srun task starts (python3 + the entry point), or what torchrun runs (the entry point)."""
    return f"python3 -u {m.entrypoint}" if m.spec.launcher == "srun" else m.entrypoint


def pytorchjob_objects(m: JobModel) -> list[dict[str, Any]]:
    """The ConfigMap (launch script, framework config) and the PyTorchJob of a Kubernetes job."""
    ns = k8s_resources.TRAINING_NAMESPACE
    labels = {"app.kubernetes.io/managed-by": "aiinfra", "app.kubernetes.io/part-of": "aiinfra-training",
              "aiinfra.io/job": m.name}
    data = {"launch.sh": render_template("jobs/launch-pod.sh.j2", **_context(m))}
    if m.deepspeed is not None:
        data["deepspeed.json"] = dump_json(m.deepspeed)
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": f"{m.name}-job", "namespace": ns, "labels": labels}, "data": data}
    lustre = m.lustre_mountpoint
    memory = m.group.node_type.memory
    shm_gib = max(1, int(memory * SHM_FRACTION) // 2**30)
    resources = {k8s_resources.GPU_RESOURCE: m.gpus_per_node}
    if m.nccl.get("NCCL_IB_HCA"):
        resources[k8s_resources.RDMA_SHARED_DEVICE_RESOURCE] = 1
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "job", "mountPath": POD_JOB_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib}Gi"}},
        {"name": "job", "configMap": {"name": f"{m.name}-job", "defaultMode": 0o555}},
    ]
    if lustre:
        mounts.append({"name": "lustre", "mountPath": lustre})
        volumes.append({"name": "lustre", "persistentVolumeClaim": {"claimName": k8s_resources.LUSTRE_PVC}})
    env = [{"name": k, "value": v} for k, v in sorted({**m.nccl, **m.env_vars}.items())]
    container = {
        "name": "pytorch",  # the training operator finds the container by this name
        "image": m.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/bash", f"{POD_JOB_DIR}/launch.sh"],
        "env": env,
        "resources": {"limits": dict(resources), "requests": dict(resources)},
        # RDMA pins memory: the memlock limit is lifted for every container by the containerd
        # unit (roles/containerd, LimitMEMLOCK=infinity), so the pod needs no IPC_LOCK, which
        # the namespace's Pod Security baseline would refuse.
        "securityContext": {"allowPrivilegeEscalation": False},
        "volumeMounts": mounts,
    }
    pod_labels = {**labels}
    template = {
        "metadata": {"labels": pod_labels,
                     "annotations": {KUEUE_PREFERRED_TOPOLOGY: k8s_resources.SU_LABEL}},
        "spec": {
            "nodeSelector": {k8s_resources.NODE_GROUP_LABEL: m.group.name},
            "tolerations": [{"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}],
            "containers": [container],
            "volumes": volumes,
        },
    }
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if m.nodes > 1:
        replicas["Worker"] = {"replicas": m.nodes - 1, "restartPolicy": "OnFailure", "template": template}
    job = {
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "metadata": {"name": m.name, "namespace": ns,
                     "labels": {**labels, KUEUE_QUEUE_LABEL: k8s_resources.TRAINING_QUEUE}},
        "spec": {
            "nprocPerNode": str(m.gpus_per_node),
            "runPolicy": {"backoffLimit": POD_BACKOFF_LIMIT, "cleanPodPolicy": "None"},
            "pytorchReplicaSpecs": replicas,
        },
    }
    return [config, job]


class _BlockDumper(StableDumper):
    """Multi-line strings (scripts, JSON in ConfigMaps) as literal blocks, readable in review."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def dump_objects(objects: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.dump(o, Dumper=_BlockDumper, sort_keys=True, default_flow_style=False, width=120)
                   for o in objects)


@renderer("jobs", "training jobs: Slurm batch scripts or Kubeflow PyTorchJobs, framework configs, NCCL")
def render_jobs(cluster: Cluster) -> Artifacts:
    out: Artifacts = {}
    for m in job_models(cluster):
        base = f"jobs/{m.name}"
        if m.scheduler == "slurm":
            out[f"{base}/sbatch.sh"] = render_template("jobs/sbatch.sh.j2", **_context(m))
            if m.deepspeed is not None:
                out[f"{base}/deepspeed.json"] = dump_json(m.deepspeed)
        else:
            head = (f"# Training job '{m.name}' of '{m.env}', rendered by aiinfra from {m.source}. Do not edit.\n"
                    f"# Submit: kubectl create -k manifests/{m.env}/jobs/{m.name}/\n")
            out[f"{base}/pytorchjob.yaml"] = head + dump_objects(pytorchjob_objects(m))
            out[f"{base}/kustomization.yaml"] = render_template(
                "k8s/kustomization.yaml.j2", env=m.env, resources=["pytorchjob.yaml"])
    return out


# ---------------------------------------------------------------- fabric acceptance (nccl-tests)

#: Where the nccl-tests binaries are on the hosts when versions.images pins no 'nccl-tests' image.
NCCL_TESTS_HOST_BIN = "/opt/nccl-tests/build"
#: nccl-tests built with MPI=1 get their ranks from Slurm's PMIx plugin.
NCCL_TESTS_MPI = "--mpi=pmix"


@renderer("acceptance", "fabric acceptance: nccl-tests jobs per node, SU and partition, with their pass marks")
def render_acceptance(cluster: Cluster) -> Artifacts:
    from aiinfra.acceptance import NCCL_TESTS_ARGS, TESTS, thresholds_table

    slurm = cluster.blueprint.slurm
    if slurm is None:
        return {}
    out: Artifacts = {}
    su_nodes = cluster.fabric.su_nodes if cluster.fabric else 1
    image = cluster.blueprint.versions.images.get("nccl-tests")
    for part in slurm.partitions:
        groups = [cluster.groups[g] for g in part.node_groups if g in cluster.groups]
        gpu_groups = [g for g in groups if g.gpus_per_node]
        if not gpu_groups:
            continue
        group = gpu_groups[0]  # one acceptance job per partition: its GPU groups share a node type's rails
        hosts = [h for g in gpu_groups for h in g.hosts]
        sus: dict[str, list[str]] = {}
        for h in hosts:
            su = cluster.hosts[h].su
            if su is not None:
                sus.setdefault(su_name(su), []).append(h)


        text = render_template(
            "acceptance/nccl-tests.sbatch.j2", env=cluster.env, source=cluster.source, partition=part.name,
            tests=TESTS, args=NCCL_TESTS_ARGS, efficiency=f"{thresholds_table(cluster, group)['efficiency']:g}",
            default_nodes=min(su_nodes, len(hosts)), gpus_per_node=group.gpus_per_node,
            image=enroot_image(image) if image else None, host_bin=NCCL_TESTS_HOST_BIN, mpi=NCCL_TESTS_MPI,
            nccl=nccl_env(cluster, group), q=_q, su_nodes=su_nodes,
            sus={su: fold(members) for su, members in sorted(sus.items())},
        )
        out[f"acceptance/{part.name}/nccl-tests.sbatch"] = text
        out[f"acceptance/{part.name}/thresholds.json"] = dump_json(
            {"partition": part.name, "groups": [thresholds_table(cluster, g) for g in gpu_groups]})
    return out
