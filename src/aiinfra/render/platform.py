"""The Kubernetes platform: one kustomize folder per component under ``manifests/<env>/k8s/``.

A component is a Helm chart (pinned in ``versions.charts``, repository in
:mod:`aiinfra.catalog.charts`) with a ``values.yaml`` generated from the blueprint, plus the
objects it needs that the chart does not make (custom resources of its operator, ConfigMaps,
volumes). The folder's kustomization lists the objects, not the values: Argo CD feeds
``values.yaml`` to the chart (gitops/), Pulumi reads the same values from the render in memory
(aiinfra.deploy.components). :data:`COMPONENTS` is the one list both executors walk (:func:`components`:
the storage component of the cluster's parallel file system only).

| component        | chart                 | objects rendered here                                   |
|------------------|-----------------------|---------------------------------------------------------|
| namespaces       | -                     | Namespaces (Pod Security), default-deny NetworkPolicies |
| argocd           | argo-cd               | - (its Application manages Argo CD itself)              |
| monitoring       | kube-prometheus-stack | DCGM exporter ServiceMonitor, GPU PrometheusRules       |
| gpu-operator     | gpu-operator          | DCGM exporter metrics ConfigMap                         |
| network-operator | network-operator      | NicClusterPolicy, IPoIB or host-device networks, nv-ipam IPPools |
| lustre           | -                     | PersistentVolumes + PersistentVolumeClaims              |
| gpfs             | -                     | the same for GPFS (storage.parallel_fs: gpfs)           |
| lws              | lws                   | -                                                       |
| kueue            | kueue                 | Topology, ResourceFlavors, ClusterQueues, LocalQueues   |
| keda             | keda                  | -                                                       |
| training-operator| (kustomize, git tag)  | - (kubeflow/trainer manifests/overlays/standalone)      |

The chart values come from :mod:`aiinfra.plan.platform_values` (what :mod:`aiinfra.checks.charts`
checks against the pinned chart's keys).
"""

from __future__ import annotations

import ipaddress
import json
import math

from aiinfra.catalog.charts import (
    NETWORK_OPERATOR_IMAGE_REPOSITORY,
    NETWORK_OPERATOR_IMAGES,
    network_operator_image_tag,
)
from aiinfra.catalog.k8s_resources import (
    GPU_RESOURCE,
    GPU_TOLERATION,
    NODE_GROUP_LABEL,
    PARALLEL_FS_PVC,
    RDMA_SHARED_DEVICE_RESOURCE,
    local_queue,
)
from aiinfra.catalog.platform import DCGM_CONFIGMAP, DCGM_CSV_KEY, ComponentSpec, components
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.mirror import site_image
from aiinfra.plan.platform_values import CHART_VALUES
from aiinfra.render import Artifacts, renderer
from aiinfra.render.k8s_hosts import chart_version
from aiinfra.render.k8s_objects import meta, objects_file, values_file
from aiinfra.render.k8s_topology import (
    GPU_MODEL_LABEL,
    PARALLEL_FS_LABEL,
    kubernetes_groups,
    topology_levels,
)
from aiinfra.render.kubernetes import WORKLOAD_NAMESPACES, component, uses_kubernetes
from aiinfra.render.monitoring import dcgm_counters_csv, render_monitoring
from aiinfra.spec.cluster import Cluster, Group
from aiinfra.spec.models import Lustre


def _gpu_groups(cluster: Cluster) -> list[Group]:
    return [g for g in kubernetes_groups(cluster) if g.gpu is not None]


def _node_in_groups(groups: list[Group]) -> dict:
    return {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": NODE_GROUP_LABEL, "operator": "In", "values": sorted(g.name for g in groups)}]}]}


# ------------------------------------------------------------------ GPU Operator

def render_gpu_operator(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    values = CHART_VALUES[spec.name](cluster)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(DCGM_CONFIGMAP, spec.namespace),
        "data": {DCGM_CSV_KEY: "# DCGM fields the exporter collects (aiinfra.render.monitoring.DCGM_FIELDS)\n"
                 + dcgm_counters_csv()},
    }
    return {"values.yaml": values_file(cluster, spec, values),
            "dcgm-metrics.yaml": objects_file(cluster, "DCGM exporter metrics", [configmap])}


# ------------------------------------------------------------------ Network Operator

def rail_netdevs(cluster: Cluster, groups: list[Group]) -> list[list[str]]:
    """The IPoIB interfaces of every rail, in rail order, as the fabric model names them on the hosts
    of ``groups`` (:func:`aiinfra.spec.fabric.ipoib_netdev`, what the infiniband role creates):
    one name per rail when the groups share their rail HCAs."""
    out: list[list[str]] = []
    for group in groups:
        ports = cluster.hosts[group.hosts[0]].rails if group.hosts else ()
        for port in ports:
            if port.rail == len(out):
                out.append([])
            if port.netdev not in out[port.rail]:
                out[port.rail].append(port.netdev)
    return out


def rail_pod_ranges(cluster: Cluster) -> list[str]:
    """Pod addresses of each rail's IPoIB network: the upper half of the rail subnet (hosts take
    addresses from the bottom, by host index; :func:`aiinfra.checks.blueprint.networks_fit` keeps
    them below the half)."""
    nets = cluster.blueprint.networks
    if nets.ipoib is None or cluster.fabric is None:
        return []
    whole = ipaddress.IPv4Network(nets.ipoib.cidr)
    subnets = list(whole.subnets(new_prefix=nets.ipoib.rail_prefix))[: cluster.fabric.rails]
    return [str(list(net.subnets(prefixlen_diff=1))[1]) for net in subnets]


def render_network_operator(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None
    version = chart_version(cluster, "network-operator")
    tag = network_operator_image_tag(version)
    groups = [g for g in kubernetes_groups(cluster) if g.node_type.rails]
    netdevs = rail_netdevs(cluster, groups)

    def image(key: str) -> dict:
        return {"image": NETWORK_OPERATOR_IMAGES[key], "repository": site_image(cluster, NETWORK_OPERATOR_IMAGE_REPOSITORY),
                "version": tag}

    values = CHART_VALUES[spec.name](cluster)
    policy_spec: dict = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": _node_in_groups(groups)},
        "tolerations": [GPU_TOLERATION],
        "secondaryNetwork": {"multus": image("multus"), "cniPlugins": image("cni_plugins")},
        # nv-ipam: the rail networks' IPAM; its validating webhook would need cert-manager
        "nvIpam": {**image("nv_ipam"), "enableWebhook": False},
    }
    ranges = rail_pod_ranges(cluster)
    networks: list[dict] = []
    if k8s.rdma == "shared":
        selector_key = RDMA_SHARED_DEVICE_RESOURCE.split("/", 1)[1]
        config = {"configList": [{"resourceName": selector_key, "rdmaHcaMax": k8s.rdma_shared_max_pods,
                                  "selectors": {"vendors": ["15b3"],
                                                "ifNames": [dev for devs in netdevs for dev in devs]}}]}
        policy_spec["rdmaSharedDevicePlugin"] = {**image("rdma_shared_device_plugin"),
                                                 "config": json.dumps(config, sort_keys=True)}
        policy_spec["secondaryNetwork"]["ipoib"] = image("ipoib_cni")
        for rail, devs in enumerate(netdevs[:len(ranges)]):
            networks.append({
                "apiVersion": "mellanox.com/v1alpha1", "kind": "IPoIBNetwork",
                "metadata": meta(f"ipoib-rail{rail}"),
                "spec": {"networkNamespace": "", "master": devs[0], "ipam": _ipam(rail)},
            })
    else:
        resources = [{"resourcePrefix": "nvidia.com", "resourceName": f"rail{r}_vf",
                      "selectors": {"vendors": ["15b3"], "pfNames": devs, "isRdma": True}}
                     for r, devs in enumerate(netdevs)]
        policy_spec["sriovDevicePlugin"] = {**image("sriov_device_plugin"),
                                            "config": json.dumps({"resourceList": resources}, sort_keys=True)}
        for rail in range(len(ranges)):
            networks.append({
                "apiVersion": "mellanox.com/v1alpha1", "kind": "HostDeviceNetwork",
                "metadata": meta(f"hostdev-rail{rail}"),
                "spec": {"networkNamespace": "", "resourceName": f"nvidia.com/rail{rail}_vf",
                         "ipam": _ipam(rail)},
            })
    # one attachment definition per workload namespace would multiply objects; "" puts it in
    # default and pods name it as default/<network>
    for net in networks:
        net["spec"]["networkNamespace"] = "default"
    policy = {"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
              "metadata": meta("nic-cluster-policy"), "spec": policy_spec}
    files = {"values.yaml": values_file(cluster, spec, values),
             "nic-cluster-policy.yaml": objects_file(cluster, "NVIDIA Network Operator policy", [policy])}
    if networks:
        files["rail-networks.yaml"] = objects_file(cluster, "secondary networks, one per rail", networks)
        files["rail-ippools.yaml"] = objects_file(cluster, "nv-ipam address pools, one per rail",
                                              rail_ip_pools(cluster, spec.namespace, groups, ranges[:len(networks)]))
    return files


# nv-ipam (Mellanox/nvidia-k8s-ipam at network-operator-v25.7.0, the release network-operator 25.7.0
# deploys): IPPool nv-ipam.nvidia.com/v1alpha1 (CRD manifests/state-nv-ipam-cni/
# 005-nv-ipam.nvidia.com_ippools.yaml of network-operator v25.7.0); its controller reads pools in its
# own namespace, the operator's (--ippools-namespace=$(POD_NAMESPACE), 040-nv-ipam-controller.yaml);
# the CNI's IPAM config names the pool (pkg/cni/types/types.go: type nv-ipam, poolName, poolType).
NV_IPAM_API = "nv-ipam.nvidia.com/v1alpha1"


def rail_pool_name(rail: int) -> str:
    return f"rail{rail}"


def rail_ip_pools(cluster: Cluster, namespace: str, groups: list[Group], ranges: list[str]) -> list[dict]:
    """One IPPool per rail over the rail's pod range, a block of ``rdma_shared_max_pods`` addresses
    per node of the rail groups (no gateway: the rail subnet is flat and routes nowhere)."""
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None
    return [{
        "apiVersion": NV_IPAM_API, "kind": "IPPool",
        "metadata": meta(rail_pool_name(rail), namespace),
        "spec": {"subnet": pod_range, "perNodeBlockSize": k8s.rdma_shared_max_pods,
                 "nodeSelector": _node_in_groups(groups)},
    } for rail, pod_range in enumerate(ranges)]


def _ipam(rail: int) -> str:
    """The rail network's CNI IPAM: nv-ipam, from the rail's IPPool."""
    return json.dumps({"type": "nv-ipam", "poolName": rail_pool_name(rail), "poolType": "ippool"}, sort_keys=True)


# ------------------------------------------------------------------ Lustre or GPFS

def render_parallel_fs(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    """The component of the chosen parallel file system (storage.parallel_fs; spec.name is lustre or
    gpfs): one PersistentVolume and claim per workload namespace. Nothing for the other one."""
    bp = cluster.blueprint
    fs = bp.storage.parallel_fs
    lustre = bp.storage.parallel
    k8s = bp.kubernetes
    if spec.name != fs or lustre is None or k8s is None:
        return {}
    claim = PARALLEL_FS_PVC[fs]
    capacity = str(lustre.capacity)
    objects: list[dict] = []
    for ns in WORKLOAD_NAMESPACES:
        pv_name = f"{fs}-{lustre.fsname}-{ns.name}"
        pv_spec: dict = {
            "capacity": {"storage": capacity},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "volumeMode": "Filesystem",
            "claimRef": {"namespace": ns.name, "name": claim},
        }
        if k8s.lustre_volumes == "static":
            # the lustre_client (gpfs_client) role mounts the file system on the host; pods see that mount
            pv_spec["hostPath"] = {"path": lustre.mountpoint, "type": "Directory"}
            pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": PARALLEL_FS_LABEL[fs], "operator": "In", "values": ["true"]}]}]}}
        else:  # Lustre only (aiinfra.checks.storage); aiinfra.checks.kubernetes refuses csi without a driver name
            assert isinstance(lustre, Lustre)
            pv_spec["csi"] = {"driver": k8s.lustre_csi_driver, "volumeHandle": f"{lustre.fsname}-{ns.name}",
                              "volumeAttributes": {"fsName": lustre.fsname, "mgsNids": ":".join(lustre.mgs_nids),
                                                   "mountOptions": ",".join(lustre.mount_options)}}
        objects.append({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta(pv_name), "spec": pv_spec})
        objects.append({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": meta(claim, ns.name),
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv_name,
                     "volumeMode": "Filesystem", "resources": {"requests": {"storage": capacity}}},
        })
    return {f"{fs}.yaml": objects_file(cluster, f"{bp.storage.parallel_title} {lustre.fsname} volumes", objects)}


# ------------------------------------------------------------------ Kueue

TOPOLOGY_NAME = "fabric"
COHORT = "aiinfra"
KUEUE_API = "kueue.x-k8s.io/v1beta2"


def flavor_name(group: Group) -> str:
    assert group.gpu is not None
    return group.gpu.name


def queue_quotas(cluster: Cluster) -> dict[str, dict[str, dict[str, int]]]:
    """queue -> flavor -> {gpus, nodes}: each queue's share of every GPU flavor, in whole nodes
    (:mod:`aiinfra.checks.kubernetes` keeps the shares at 1 or less)."""
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None
    shares = k8s.queue_gpu_shares
    nodes_per_flavor: dict[str, int] = {}
    for g in _gpu_groups(cluster):
        nodes_per_flavor[flavor_name(g)] = nodes_per_flavor.get(flavor_name(g), 0) + g.node_count
    out: dict[str, dict[str, dict[str, int]]] = {}
    for ns in WORKLOAD_NAMESPACES:
        queue = local_queue(ns.name)
        share = shares.get(queue, 0.0)  # type: ignore[call-overload]
        out[queue] = {f: {"nodes": math.floor(n * share + 1e-9)} for f, n in nodes_per_flavor.items()}
    return out


def render_kueue(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    groups = _gpu_groups(cluster)
    files = {"values.yaml": values_file(cluster, spec, CHART_VALUES[spec.name](cluster))}
    if not groups:
        return files
    by_flavor: dict[str, Group] = {}
    for g in groups:
        by_flavor.setdefault(flavor_name(g), g)
    topology = {"apiVersion": KUEUE_API, "kind": "Topology", "metadata": meta(TOPOLOGY_NAME),
                "spec": {"levels": [{"nodeLabel": level.node_label} for level in topology_levels(cluster)]}}
    flavors = [{
        "apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": meta(name),
        "spec": {"nodeLabels": {GPU_MODEL_LABEL: name}, "tolerations": [GPU_TOLERATION],
                 "topologyName": TOPOLOGY_NAME},
    } for name in sorted(by_flavor)]
    quotas = queue_quotas(cluster)
    cluster_queues, local_queues = [], []
    for ns in WORKLOAD_NAMESPACES:
        queue = local_queue(ns.name)
        flavor_quotas = []
        for name, g in sorted(by_flavor.items()):
            nodes = quotas[queue][name]["nodes"]
            nt = g.node_type
            flavor_quotas.append({"name": name, "resources": [
                {"name": "cpu", "nominalQuota": nodes * nt.cpu.sockets * nt.cpu.cores_per_socket
                 * nt.cpu.threads_per_core},
                {"name": "memory", "nominalQuota": f"{nodes * nt.memory // 2**30}Gi"},
                {"name": GPU_RESOURCE, "nominalQuota": nodes * g.gpus_per_node},
                {"name": RDMA_SHARED_DEVICE_RESOURCE, "nominalQuota": nodes * (
                    cluster.blueprint.kubernetes.rdma_shared_max_pods if cluster.blueprint.kubernetes else 1)},
            ]})
        cluster_queues.append({
            "apiVersion": KUEUE_API, "kind": "ClusterQueue", "metadata": meta(queue),
            "spec": {
                "cohortName": COHORT,
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}},
                "queueingStrategy": "BestEffortFIFO",
                "preemption": {"reclaimWithinCohort": "Any", "withinClusterQueue": "LowerPriority",
                               "borrowWithinCohort": {"policy": "Never"}},
                "flavorFungibility": {"whenCanBorrow": "MayStopSearch", "whenCanPreempt": "TryNextFlavor"},
                "resourceGroups": [{"coveredResources": ["cpu", "memory", GPU_RESOURCE,
                                                        RDMA_SHARED_DEVICE_RESOURCE],
                                    "flavors": flavor_quotas}],
            },
        })
        local_queues.append({"apiVersion": KUEUE_API, "kind": "LocalQueue", "metadata": meta(queue, ns.name),
                             "spec": {"clusterQueue": queue}})
    files["topology.yaml"] = objects_file(cluster, "Kueue topology of the fabric", [topology])
    files["flavors.yaml"] = objects_file(cluster, "Kueue resource flavors, one per GPU model", flavors)
    files["queues.yaml"] = objects_file(cluster, "Kueue queues and GPU quotas", cluster_queues + local_queues)
    return files


# ------------------------------------------------------------------ LWS, KEDA

def render_chart_values(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    """A chart-only component: its values (Argo CD, LWS, KEDA)."""
    return {"values.yaml": values_file(cluster, spec, CHART_VALUES[spec.name](cluster))}


# ------------------------------------------------------------------ training operator

def render_training_operator(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    """Kubeflow training-operator (the PyTorchJobs of render/jobs.py): its kustomize overlay at the
    pinned tag is the Application's source (gitops/) or Pulumi's kustomize Directory; the folder
    holds no object of its own (the overlay brings the ``kubeflow`` namespace)."""
    return {}


RENDERERS = {
    "monitoring": render_monitoring,
    "gpu-operator": render_gpu_operator,
    "network-operator": render_network_operator,
    "lustre": render_parallel_fs,
    "gpfs": render_parallel_fs,
    "kueue": render_kueue,
    "lws": render_chart_values,
    "keda": render_chart_values,
    "argocd": render_chart_values,
    "training-operator": render_training_operator,
}

# files of a component folder that are chart values, not objects (kustomize does not list them)
VALUES_FILE = "values.yaml"


@renderer("k8s-platform", "Kubernetes platform components: GPU/Network Operator, Lustre, Kueue, LWS, monitoring")
def render_platform(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    if not uses_kubernetes(cluster) or cluster.blueprint.kubernetes is None:
        return {}
    out: Artifacts = {}
    for spec in components(cluster.blueprint.storage.parallel_fs):
        fn = RENDERERS.get(spec.name)
        if fn is None:
            continue
        files = fn(cluster, spec)
        if files or spec.chart:  # a component installed from its source alone still has its folder
            out.update(component(spec.name, files, cluster.env, values=[VALUES_FILE]))
    return out
