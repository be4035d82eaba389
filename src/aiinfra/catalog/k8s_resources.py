"""Kubernetes names shared by every layer: extended resources, shared claims, node-label keys.

One place, so the platform (device plugins, node labels), training and serving agree.

- ``RDMA_SHARED_DEVICE_RESOURCE``: the NVIDIA Network Operator's RDMA shared device plugin
  advertises ``rdma/<resourceName>``; its default ``rdmaSharedDevicePlugin`` config names the
  first pool ``rdma_shared_device_a``. A pod that runs NCCL over InfiniBand requests one.
- ``LUSTRE_PVC``: the PersistentVolumeClaim, in every workload namespace, bound to the static
  PersistentVolume of the blueprint's Lustre file system (models, checkpoints, engines);
  ``PARALLEL_FS_PVC`` names that claim (and the pods' volume) for each parallel file system
  (``storage.parallel_fs``: lustre or gpfs).
- Node labels derived from the fabric model (``aiinfra.spec.fabric``): the scalable unit (SU)
  of a GPU node (value ``su_name(su)``, e.g. ``su16``) and its node group.
- The node state taint and reason annotation (a drained node), and the node health check's
  condition, shared by the blueprint's ``nodes:``, the kubernetes role and the health check.
"""

from __future__ import annotations

GPU_RESOURCE = "nvidia.com/gpu"
# GPU nodes repel pods that do not ask for GPUs; the operators' daemonsets and Kueue's flavors tolerate it.
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}
RDMA_SHARED_DEVICE_RESOURCE = "rdma/rdma_shared_device_a"
PARALLEL_FS_PVC = {"lustre": "lustre", "gpfs": "gpfs"}
LUSTRE_PVC = PARALLEL_FS_PVC["lustre"]

LABEL_PREFIX = "aiinfra.io"
SU_LABEL = f"{LABEL_PREFIX}/su"
# A node the blueprint takes out of service (nodes: section) or `aiinfra node drain` drains: the
# taint's value is the state (drain: NoSchedule, running pods stay; down: NoExecute, they leave),
# the reason rides in NODE_STATE_REASON_ANNOTATION (taint and label values cannot hold free text).
NODE_STATE_KEY = f"{LABEL_PREFIX}/node-state"
NODE_STATE_REASON_ANNOTATION = f"{LABEL_PREFIX}/node-state-reason"
NODE_STATE_EFFECT = {"drain": "NoSchedule", "down": "NoExecute"}
NODE_GROUP_LABEL = f"{LABEL_PREFIX}/node-group"
# The node health check (roles/slurm/files/aiinfra-nodecheck, run on Kubernetes GPU nodes by the
# node-health DaemonSet): the node condition it keeps (True healthy, False with the reason), the
# state it drains a failing node to (NODE_STATE_KEY=drain, NODE_STATE_EFFECT["drain"]), the
# versions.images key of the Python image it runs in, and the namespace of its DaemonSet.
NODE_HEALTH_CONDITION = "AiinfraNodeHealthy"
NODE_HEALTH_DRAIN_STATE = "drain"
NODECHECK_IMAGE_KEY = "nodecheck"
NODE_HEALTH_NAMESPACE = "kube-system"

# Training workloads (aiinfra.render.jobs): the namespace PyTorchJobs run in; their LocalQueue is
# local_queue(TRAINING_NAMESPACE).
TRAINING_NAMESPACE = "aiinfra-training"


def local_queue(namespace: str) -> str:
    """The Kueue LocalQueue (and ClusterQueue) of a workload namespace: its name without ``aiinfra-``
    (``aiinfra-serving`` -> ``serving``); workloads name it in the ``kueue.x-k8s.io/queue-name`` label."""
    return namespace.removeprefix("aiinfra-")
