"""Kubernetes node labels and taints, derived from the cluster and fabric model.

One function, :func:`node_labels`, says what a node is: its GPU product and count, node group,
spine group (three-level fabrics), scalable unit (SU), the leaf switch of each rail and its NVLink
domain. The kubelet registers the node with these labels (``manifests/<env>/k8s-hosts/nodes.yaml``,
applied by the ``kubernetes`` role), Kueue's ResourceFlavors select them and Kueue's Topology is
built from the same keys (:func:`topology_levels`), so the placement Kueue computes is the fabric
the blueprint describes.

Labels are under ``aiinfra.io/`` (kubelets may set these; ``nvidia.com/gpu.*`` belong to GPU
Feature Discovery and ``node-role.kubernetes.io/*`` to kubeadm).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiinfra.catalog.k8s_resources import (
    GPU_TAINT,
    LABEL_PREFIX,
    NODE_GROUP_LABEL,
    NODE_STATE_EFFECT,
    NODE_STATE_KEY,
    SU_LABEL,
)
from aiinfra.spec.addressing import split_name
from aiinfra.spec.cluster import Cluster, Group, Host, su_name
from aiinfra.spec.fabric import sg_name

PREFIX = LABEL_PREFIX
GPU_MODEL_LABEL = f"{PREFIX}/gpu-model"
GPU_PRODUCT_LABEL = f"{PREFIX}/gpu-product"
GPU_COUNT_LABEL = f"{PREFIX}/gpu-count"
NVLINK_DOMAIN_LABEL = f"{PREFIX}/nvlink-domain"
LUSTRE_LABEL = f"{PREFIX}/lustre"
# nodes that mount the chosen parallel file system (storage.parallel_fs), for its hostPath volumes
PARALLEL_FS_LABEL = {"lustre": LUSTRE_LABEL, "gpfs": f"{PREFIX}/gpfs"}
HOSTNAME_LABEL = "kubernetes.io/hostname"
# three-level fabrics: the spine group of the node's SU (sg01), the level of Kueue's Topology above the SU
SPINE_GROUP_LABEL = f"{PREFIX}/spine-group"



def leaf_label(rail: int) -> str:
    return f"{PREFIX}/leaf-rail{rail}"


@dataclass(frozen=True)
class TopologyLevel:
    name: str  # what the level is (for people and docs)
    node_label: str


def kubernetes_groups(cluster: Cluster) -> list[Group]:
    """Node groups whose workloads Kubernetes schedules."""
    return cluster.groups_for_scheduler("kubernetes")


def kubernetes_hosts(cluster: Cluster) -> list[str]:
    """Every host that runs a kubelet: the control plane first, then the workers, blueprint order."""
    control = cluster.hosts_with_role("k8s_control_plane")
    workers = [h for g in kubernetes_groups(cluster) for h in g.hosts if h not in control]
    return [*control, *workers]


def nvlink_domain(cluster: Cluster, host: Host) -> str | None:
    """Name of the NVLink domain of ``host``: the node itself on HGX boards (8 GPUs, one NVSwitch
    domain), or consecutive nodes of the group when a domain spans nodes (NVL72 racks)."""
    group = cluster.groups[host.group]
    if group.gpu is None:
        return None
    nodes_per_domain = max(1, group.gpu.nvlink_domain_gpus // group.gpus_per_node)
    if nodes_per_domain == 1:
        return host.name
    number = split_name(host.name).number or 1  # the node's own number: the rack it sits in, not a list position
    return f"{group.name}-nvl{(number - 1) // nodes_per_domain + 1:03d}"


def node_labels(cluster: Cluster, host_name: str) -> dict[str, str]:
    """The labels a node registers with (sorted by key)."""
    host = cluster.hosts[host_name]
    group = cluster.groups[host.group]
    labels = {NODE_GROUP_LABEL: group.name}
    if group.gpu is not None:
        labels[GPU_MODEL_LABEL] = group.gpu.name
        labels[GPU_PRODUCT_LABEL] = group.gpu.product
        labels[GPU_COUNT_LABEL] = str(group.gpus_per_node)
        labels[NVLINK_DOMAIN_LABEL] = nvlink_domain(cluster, host) or host.name
    if host.su is not None:
        labels[SU_LABEL] = su_name(host.su)
    if host.spine_group is not None:
        labels[SPINE_GROUP_LABEL] = sg_name(host.spine_group)
    for port in host.rails:
        labels[leaf_label(port.rail)] = port.leaf
    storage = cluster.blueprint.storage
    if storage.client_role in group.roles:
        labels[PARALLEL_FS_LABEL[storage.parallel_fs]] = "true"
    return dict(sorted(labels.items()))


def node_taints(cluster: Cluster, host_name: str) -> list[dict[str, str]]:
    """Taints a node registers with: GPU nodes', and the node's state when the blueprint takes it out
    of service (the same taint `aiinfra node drain` sets). Control-plane taints are kubeadm's own."""
    group = cluster.groups[cluster.hosts[host_name].group]
    taints = [dict(GPU_TAINT)] if group.gpu is not None and group.scheduler == "kubernetes" else []
    state = group.states.get(host_name)
    if state is not None:
        taints.append({"effect": NODE_STATE_EFFECT[state.state], "key": NODE_STATE_KEY, "value": state.state})
    return taints


def topology_levels(cluster: Cluster) -> list[TopologyLevel]:
    """Kueue Topology levels, widest first: spine group (three-level fabrics: the SUs below one set
    of spines), scalable unit (the nodes below one set of leaf switches, one per rail), NVLink
    domain, host. Built from the same label keys as :func:`node_labels`. In a rail-optimized fabric
    the leaves of every rail split the nodes exactly as the SUs do, so the SU level is the leaf level
    too."""
    levels = []
    on_fabric = cluster.fabric is not None and any(cluster.hosts[h].su is not None
                                                   for g in kubernetes_groups(cluster) for h in g.hosts)
    if on_fabric and cluster.fabric.levels == 3:
        levels.append(TopologyLevel("spine group (spine switches of every rail above its SUs)", SPINE_GROUP_LABEL))
    if on_fabric:
        levels.append(TopologyLevel("scalable unit (leaf switches of every rail)", SU_LABEL))
    if any(g.gpu is not None for g in kubernetes_groups(cluster)):
        levels.append(TopologyLevel("NVLink domain", NVLINK_DOMAIN_LABEL))
    levels.append(TopologyLevel("host", HOSTNAME_LABEL))
    return levels
