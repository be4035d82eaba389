"""Training jobs under ``manifests/<env>/jobs/<job>/``: Slurm batch scripts or Kubeflow PyTorchJobs.

Everything a job runs is resolved by the plan (:mod:`aiinfra.plan.jobs`): layout, batch,
checkpoint policy, NCCL environment, framework arguments or DeepSpeed JSON. This module only
prints them through ``templates/jobs/``.

Files per job (the node group's scheduler decides):

- Slurm: ``sbatch.sh`` (self-contained: resources, container, NCCL, checkpoint pruning, the
  time-limit signal, requeue, resume) and, for DeepSpeed, ``deepspeed.json``.
- Kubernetes: ``pytorchjob.yaml`` (a ConfigMap with the launch script and framework config, and
  the PyTorchJob) and ``kustomization.yaml``. Jobs are submitted (``kubectl create -k``), not
  synced: they are outside the Argo CD tree ``k8s/``.
"""

from __future__ import annotations

from typing import Any

import yaml

from aiinfra.catalog import k8s_resources
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.jobs import POD_JOB_DIR, ResolvedJob, under
from aiinfra.render import Artifacts, renderer
from aiinfra.render.k8s_topology import GPU_TAINT
from aiinfra.render.templates import StableDumper, dump_json, render_template, shell_quote
from aiinfra.spec.cluster import Cluster

#: Seconds between two passes of the checkpoint pruner on the batch host / rank-0 pod.
PRUNE_EVERY_S = 600
#: Port of the rendezvous on the first node: 20000 + job id mod 20000 (two jobs on one node differ).
MASTER_PORT_BASE = 20000
#: /dev/shm of a training pod (NCCL's shared-memory transport, data-loader workers): a fraction of RAM.
SHM_FRACTION = 0.25
#: Pod restarts before the PyTorchJob fails (each restart resumes from the newest checkpoint).
POD_BACKOFF_LIMIT = 3
#: Kueue topology-aware scheduling: keep a job's pods inside one scalable unit when it can.
KUEUE_PREFERRED_TOPOLOGY = "kueue.x-k8s.io/podset-preferred-topology"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def enroot_image(ref: str) -> str:
    """An image reference as pyxis/enroot want it: the registry separated by '#'.

    ``nvcr.io/nvidia/pytorch:25.04-py3`` -> ``nvcr.io#nvidia/pytorch:25.04-py3``; an image of the
    default registry (``vllm/vllm-openai:v0.8.5``) stays as it is.
    """
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost") and "#" not in ref:
        return f"{first}#{rest}"
    return ref


def arg_lines(args: list[str]) -> list[str]:
    """Shell-quoted arguments, one flag with its values per line."""
    lines: list[list[str]] = []
    for a in args:
        if a.startswith("--") or not lines:
            lines.append([shell_quote(a)])
        else:
            lines[-1].append(shell_quote(a))
    return [" ".join(words) for words in lines]


def _context(m: ResolvedJob) -> dict[str, Any]:
    return {"m": m, "q": shell_quote, "prune_every_s": PRUNE_EVERY_S, "master_port_base": MASTER_PORT_BASE,
            "pod_job_dir": POD_JOB_DIR, "arg_lines": arg_lines(m.args),
            "container_image": enroot_image(m.image), "container_mounts": ",".join(container_mounts(m)),
            "default_program": default_program(m),
            "deepspeed_json": dump_json(m.deepspeed).rstrip("\n") if m.deepspeed is not None else ""}


def container_mounts(m: ResolvedJob) -> list[str]:
    """pyxis --container-mounts: the Lustre mount, the NCCL topology file and a node-local Megatron-LM
    checkout (same paths inside)."""
    paths = [m.lustre_mountpoint] if m.lustre_mountpoint else []
    if m.lustre_mountpoint is None or not under(m.checkpoint.dir, m.lustre_mountpoint):
        paths.append(m.checkpoint.dir)
    topo = m.nccl.get("NCCL_TOPO_FILE")
    if topo:
        paths.append(topo)
    code = m.megatron_lm
    if code is not None and (m.lustre_mountpoint is None or not under(code.path, m.lustre_mountpoint)):
        paths.append(code.path)  # the node-local checkout (no Lustre), read-only is enough
    return [f"{p}:{p}:ro" if code is not None and p == code.path else f"{p}:{p}" for p in paths]


def default_program(m: ResolvedJob) -> str:
    """What each srun task starts (python3 + the entry point), or what torchrun runs (the entry point)."""
    return f"python3 -u {m.entrypoint}" if m.spec.launcher == "srun" else m.entrypoint


def pytorchjob_objects(m: ResolvedJob) -> list[dict[str, Any]]:
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
        claim = k8s_resources.PARALLEL_FS_PVC[m.parallel_fs]  # Lustre or GPFS (storage.parallel_fs)
        mounts.append({"name": claim, "mountPath": lustre})
        volumes.append({"name": claim, "persistentVolumeClaim": {"claimName": claim}})
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
                     "labels": {**labels, KUEUE_QUEUE_LABEL: k8s_resources.local_queue(k8s_resources.TRAINING_NAMESPACE)}},
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
def render_jobs(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    out: Artifacts = {}
    for m in plan.jobs:
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


