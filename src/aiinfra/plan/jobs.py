"""Training jobs resolved: the plan's layout and numbers turned into what runs.

For each planned job: launcher settings (tasks, CPUs, partition, time limit, switches), paths,
the checkpoint policy (the planner's Young/Daly interval in whole steps), the NCCL environment
(:func:`aiinfra.plan.fabric_env.nccl_env`, the same function for every launcher), and the
framework's arguments (Megatron-LM) or DeepSpeed JSON, which express exactly the plan's layout,
sharding and recomputation. Computed once, in :func:`aiinfra.plan.cluster.plan_cluster`; the
checks (:mod:`aiinfra.checks.training`) and the renderer (:mod:`aiinfra.render.jobs`) read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aiinfra.catalog.models import LlmArchitecture
from aiinfra.plan.fabric_env import nccl_env
from aiinfra.plan.mirror import site_image
from aiinfra.plan.reliability import ReliabilityPlan
from aiinfra.plan.software import MEGATRON_LM_ENTRYPOINT, Checkout, job_software
from aiinfra.plan.training import FRAMEWORK_ZERO_STAGES, TrainingPlan, stage_layer_counts
from aiinfra.spec.cluster import Cluster, Group
from aiinfra.spec.models import TrainingJob

# ---------------------------------------------------------------- defaults and constants

#: versions.images key used when a job names no image.
DEFAULT_IMAGE_KEY = {"megatron": "megatron", "deepspeed": "deepspeed"}
#: Megatron pads the vocabulary to a multiple of this times TP (Llama 3's 128,256 = 1,002 x 128).
MAKE_VOCAB_SIZE_DIVISIBLE_BY = 128
#: Checkpoint layout of each framework: the tracker file naming the newest complete checkpoint and
#: the prefix of checkpoint folders (Megatron: latest_checkpointed_iteration.txt, iter_0000125/;
#: DeepSpeed: latest holding the tag, global_step125/).
CHECKPOINT_LAYOUT = {
    "megatron": ("latest_checkpointed_iteration.txt", "iter_"),
    "deepspeed": ("latest", "global_step"),
}
#: Slurm delivers --signal up to 60 s early (its event resolution); the lead time covers that, the
#: step in flight and one checkpoint write, twice, and never less than five minutes.
SIGNAL_RESOLUTION_S = 60
MIN_SIGNAL_LEAD_S = 300
#: Inside pods: where the ConfigMap with the launch script and framework config is mounted.
POD_JOB_DIR = "/etc/aiinfra/job"



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
class ResolvedJob:
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
    lustre_mountpoint: str | None  # mount point of the parallel file system (Lustre or GPFS)
    checkpoint: Checkpointing
    train_iters: int
    entrypoint: str
    nccl: dict[str, str]
    env_vars: dict[str, str]
    args: list[str] = field(default_factory=list)  # framework arguments (Megatron) or script arguments
    deepspeed: dict[str, Any] | None = None
    parallel_fs: str = "lustre"  # storage.parallel_fs: names the pods' volume and claim of that file system
    #: the Megatron-LM checkout the default entry point is in (aiinfra.plan.software; None: DeepSpeed or
    #: an entry point of the blueprint's)
    megatron_lm: Checkout | None = None

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

    def to_dict(self) -> dict[str, Any]:
        """What the job runs, as ``aiinfra plan --json`` prints it (the rendered files say the same)."""
        lay = self.plan.layout
        slurm = self.scheduler == "slurm"  # --switches and --cpus-per-task exist only in a Slurm allocation
        return {
            "name": self.name, "framework": self.framework, "scheduler": self.scheduler, "node_group": self.group.name,
            "nodes": self.nodes, "gpus_per_node": self.gpus_per_node, "world_size": self.world_size,
            "image": self.image, "partition": self.partition, "time_limit": self.time_limit,
            "switches": self.switches if slurm else None, "tasks_per_node": self.tasks_per_node,
            "cpus_per_task": self.cpus_per_task if slurm else None,
            "layout": {"tp": lay.tp, "pp": lay.pp, "vpp": lay.vpp, "cp": lay.cp, "dp": lay.dp,
                       "micro_batch": lay.micro_batch, "global_batch": lay.global_batch,
                       "recompute": lay.recompute, "zero_stage": lay.zero_stage},
            "checkpoint": {"dir": self.checkpoint.dir, "interval_steps": self.checkpoint.interval_steps,
                           "keep": self.checkpoint.keep, "source": self.checkpoint.source},
            "train_iters": self.train_iters, "entrypoint": self.entrypoint,
            "nccl": dict(self.nccl), "env": dict(self.env_vars), "args": list(self.args),
            "deepspeed": self.deepspeed,
        }


# ---------------------------------------------------------------- pieces (pure functions)


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


def lustre_mount(cluster: Cluster) -> str | None:
    """Mount point of the parallel file system the blueprint chose (storage.parallel_fs: Lustre or
    GPFS), where jobs find data and keep checkpoints; None when it is not declared."""
    fs = cluster.blueprint.storage.parallel
    return fs.mountpoint.rstrip("/") if fs is not None else None


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def partition_of(cluster: Cluster, group: str) -> tuple[str | None, str | None]:
    slurm = cluster.blueprint.slurm
    if slurm is None:
        return None, None
    for part in slurm.partitions:
        if group in part.node_groups:
            return part.name, part.max_time
    return None, None


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
    # the planned sharding: stage 1 is the distributed optimizer (optimizer states sharded), stage 0
    # plain data parallelism; the planner offers Megatron nothing else (FRAMEWORK_ZERO_STAGES)
    assert lay.zero_stage in FRAMEWORK_ZERO_STAGES["megatron"], "the planner offers Megatron stages 0 and 1 only"
    if lay.zero_stage >= 1:
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
    # names and defaults from Megatron-LM core_r0.12.0 megatron/training/arguments.py: --normalization
    # (LayerNorm), --norm-epsilon (1e-5), --disable-bias-linear, --add-qkv-bias, --position-embedding-type
    # (learned_absolute), --rotary-base (int, 10000): every value is written, none left to a default
    args += ["--normalization", "RMSNorm" if m.norm == "rmsnorm" else "LayerNorm",
             "--norm-epsilon", f"{m.norm_epsilon:g}"]
    if not m.linear_bias:
        args.append("--disable-bias-linear")
        if m.qkv_bias:
            args.append("--add-qkv-bias")
    if m.learned_positions:
        args += ["--position-embedding-type", "learned_absolute"]
    else:
        args += ["--position-embedding-type", "rope", "--rotary-base", str(m.rope_theta)]
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
    """DeepSpeed JSON: batch sizes (train_batch_size = micro x accumulation x DP), ZeRO (the planned
    stage, the one the memory plan assumed), bf16."""
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


# ---------------------------------------------------------------- building the model


def resolve_job(cluster: Cluster, index: int, plan: TrainingPlan, rel: ReliabilityPlan | None) -> ResolvedJob | None:
    """What ``training[index]`` runs, from its plan; None where the blueprint lacks what it needs
    (an image, paths, the planner's checkpoint interval): :mod:`aiinfra.checks.training` says why."""
    bp = cluster.blueprint
    job = bp.training[index]
    group = cluster.groups.get(job.node_group)
    if group is None or not group.gpus_per_node:
        return None
    lustre = lustre_mount(cluster)
    if lustre is None and (None in (job.checkpoint_dir, job.data_path, job.tokenizer)
                           or (job.framework == "deepspeed" and job.entrypoint is None)):
        return None
    if job.checkpoint_interval_steps == "auto" and rel is None:
        return None
    model_name = job.model
    ckpt_dir = job.checkpoint_dir or f"{lustre}/checkpoints/{cluster.env}/{job.name}"
    data_path = job.data_path or f"{lustre}/datasets/{model_name}/text_document"
    tokenizer = job.tokenizer or f"{lustre}/models/{model_name}/tokenizer"
    if job.checkpoint_interval_steps != "auto":
        steps, interval_s, source = int(job.checkpoint_interval_steps), None, "blueprint"
    else:
        steps, interval_s, source = checkpoint_interval_steps(rel.interval_s, plan.step_time_s), rel.interval_s, "planner"
    tracker, prefix = CHECKPOINT_LAYOUT[job.framework]
    ckpt = Checkpointing(ckpt_dir, steps, interval_s, rel.checkpoint_write_s if rel else None, job.checkpoint_keep,
                         source, tracker, prefix)
    train_iters = math.ceil(plan.request.tokens / plan.tokens_per_step) if plan.request.tokens else 0
    image_key = job.image or DEFAULT_IMAGE_KEY[job.framework]
    partition, max_time = partition_of(cluster, group.name)
    fabric = bp.fabric
    cpu = group.node_type.cpu
    cpus = cpu.sockets * cpu.cores_per_socket * cpu.threads_per_core
    in_pod = group.scheduler == "kubernetes"
    tasks = group.gpus_per_node if (job.launcher == "srun" and not in_pod) else 1
    per_task = cpus // tasks
    env_vars = {"OMP_NUM_THREADS": str(max(1, cpus // group.gpus_per_node))}
    if job.framework == "megatron":
        env_vars["CUDA_DEVICE_MAX_CONNECTIONS"] = "1"  # Megatron's TP/SP communication overlap needs one stream
    megatron = None
    if job.framework == "megatron" and job.entrypoint is None:
        megatron = job_software(cluster).megatron_lm
        if megatron is None:
            return None  # versions.megatron_lm is not pinned or not known: aiinfra.checks.host_versions says so
    if job.framework == "megatron":
        entry = job.entrypoint or f"{megatron.path}/{MEGATRON_LM_ENTRYPOINT}"
        args = megatron_args(plan, job, ckpt, train_iters, data_path, tokenizer)
        ds = None
    else:
        entry = job.entrypoint or f"{lustre}/code/{job.name}/train.py"
        config_path = f"{POD_JOB_DIR}/deepspeed.json" if in_pod else f"{ckpt_dir}/deepspeed.json"
        args = deepspeed_args(plan, job, ckpt, train_iters, config_path, data_path, tokenizer)
        ds = deepspeed_config(plan, job)
    return ResolvedJob(
        env=cluster.env, source=cluster.source, spec=job, group=group, plan=plan, reliability=rel,
        scheduler=group.scheduler, image_key=image_key, image=site_image(cluster, bp.versions.images.get(image_key, "")),
        partition=partition,
        time_limit=None if max_time in (None, "UNLIMITED", "INFINITE") else max_time,
        signal_lead_s=signal_lead_s(plan.step_time_s, ckpt.write_s),
        switches=switches_for(job.nodes, fabric.su_nodes) if fabric is not None else None,
        su_nodes=fabric.su_nodes if fabric is not None else None,
        tasks_per_node=tasks, alloc_tasks_per_node=min(tasks, cpus), cpus_per_task=max(1, per_task),
        overcommit=per_task < 1,
        lustre_mountpoint=lustre, checkpoint=ckpt, train_iters=train_iters, entrypoint=entry,
        nccl=nccl_env(cluster, group, in_pod=in_pod), env_vars=env_vars, args=args, deepspeed=ds,
        parallel_fs=bp.storage.parallel_fs,
        megatron_lm=megatron,
    )


def resolve_jobs(cluster: Cluster, training: tuple[tuple[TrainingPlan, ReliabilityPlan | None], ...]
                 ) -> tuple[ResolvedJob, ...]:
    """Every planned job resolved, in blueprint order."""
    plans = {plan.request.name: (plan, rel) for plan, rel in training}
    out = []
    for i, job in enumerate(cluster.blueprint.training):
        if job.name in plans:
            resolved = resolve_job(cluster, i, *plans[job.name])
            if resolved is not None:
                out.append(resolved)
    return tuple(out)
