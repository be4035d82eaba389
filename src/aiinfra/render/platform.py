"""The Kubernetes platform: one kustomize folder per component under ``manifests/<env>/k8s/``.

A component is a Helm chart (pinned in ``versions.charts``, repository in
:mod:`aiinfra.catalog.charts`) with a ``values.yaml`` generated from the blueprint, plus the
objects it needs that the chart does not make (custom resources of its operator, ConfigMaps,
volumes). The folder's kustomization lists the objects, not the values: Argo CD feeds
``values.yaml`` to the chart (gitops/), Pulumi reads the same values from the render in memory
(aiinfra.deploy.components). :data:`COMPONENTS` is the one list both executors walk.

| component        | chart                 | objects rendered here                                   |
|------------------|-----------------------|---------------------------------------------------------|
| namespaces       | -                     | Namespaces (Pod Security), default-deny NetworkPolicies |
| monitoring       | kube-prometheus-stack | DCGM exporter ServiceMonitor, GPU PrometheusRules       |
| gpu-operator     | gpu-operator          | DCGM exporter metrics ConfigMap                         |
| network-operator | network-operator      | NicClusterPolicy, IPoIB or host-device networks         |
| lustre           | -                     | PersistentVolumes + PersistentVolumeClaims              |
| lws              | lws                   | -                                                       |
| kueue            | kueue                 | Topology, ResourceFlavors, ClusterQueues, LocalQueues   |
| keda             | keda                  | -                                                       |
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass

from aiinfra.catalog.charts import (
    NETWORK_OPERATOR_IMAGE_REPOSITORY,
    NETWORK_OPERATOR_IMAGES,
    chart,
    network_operator_image_tag,
)
from aiinfra.catalog.k8s_resources import (
    GPU_RESOURCE,
    LUSTRE_PVC,
    NODE_GROUP_LABEL,
    RDMA_SHARED_DEVICE_RESOURCE,
)
from aiinfra.catalog.platform import COMPONENTS, ComponentSpec, component_spec
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.render import Artifacts, renderer
from aiinfra.render.k8s_hosts import chart_version
from aiinfra.render.k8s_topology import (
    GPU_MODEL_LABEL,
    GPU_TAINT,
    LUSTRE_LABEL,
    kubernetes_groups,
    topology_levels,
)
from aiinfra.render.kubernetes import WORKLOAD_NAMESPACES, component, uses_kubernetes
from aiinfra.render.templates import dump_yaml, dump_yaml_documents
from aiinfra.spec.cluster import Cluster, Group

MANAGED = {"app.kubernetes.io/managed-by": "aiinfra", "app.kubernetes.io/part-of": "aiinfra-platform"}
GPU_TOLERATION = {"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}


def _header(cluster: Cluster, what: str) -> str:
    return f"# {what} of '{cluster.env}', rendered by aiinfra from {cluster.source}. Do not edit.\n"


def _meta(name: str, namespace: str | None = None, **labels: str) -> dict:
    meta: dict = {"name": name, "labels": {**MANAGED, **labels}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _objects(cluster: Cluster, what: str, objects: list[dict]) -> str:
    return _header(cluster, what) + dump_yaml_documents(objects)


def _values(cluster: Cluster, spec: ComponentSpec, values: dict) -> str:
    c = chart(spec.chart or "")
    version = chart_version(cluster, c.key)
    repo = "" if c.is_oci else f" --repo {c.repository}"
    return (_header(cluster, f"Helm values of {c.reference} {version}")
            + f"# helm upgrade --install {c.release} {c.reference}{repo} --version {version} -n {c.namespace} "
              f"-f values.yaml\n" + dump_yaml(values))


def _gpu_groups(cluster: Cluster) -> list[Group]:
    return [g for g in kubernetes_groups(cluster) if g.gpu is not None]


def _node_in_groups(groups: list[Group]) -> dict:
    return {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": NODE_GROUP_LABEL, "operator": "In", "values": sorted(g.name for g in groups)}]}]}


# ------------------------------------------------------------------ monitoring (GPU health)

@dataclass(frozen=True)
class DcgmField:
    name: str
    kind: str  # gauge | counter
    help: str


# The DCGM exporter collects these fields (its metrics ConfigMap) and the alert rules use them:
# one list, so an alert never waits on a metric nobody collects.
DCGM_FIELDS = (
    DcgmField("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    DcgmField("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    DcgmField("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    DcgmField("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    DcgmField("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    DcgmField("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    DcgmField("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    DcgmField("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    DcgmField("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    DcgmField("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    DcgmField("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    DcgmField("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "counter", "Total number of single-bit volatile ECC errors."),
    DcgmField("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors."),
    DcgmField("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors"),
    DcgmField("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors"),
    DcgmField("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed"),
    DcgmField("DCGM_FI_DEV_THERMAL_VIOLATION", "counter", "Throttling duration due to thermal constraints (in us)."),
    DcgmField("DCGM_FI_DEV_POWER_VIOLATION", "counter", "Throttling duration due to power constraints (in us)."),
    DcgmField("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    DcgmField("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "counter", "Total number of NVLink flow-control CRC errors."),
    DcgmField("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active."),
    DcgmField("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active."),
    DcgmField("DCGM_FI_PROF_DRAM_ACTIVE", "gauge", "Ratio of cycles the device memory interface is active."),
    DcgmField("DCGM_FI_PROF_NVLINK_TX_BYTES", "counter", "The number of bytes of active NvLink tx data."),
    DcgmField("DCGM_FI_PROF_NVLINK_RX_BYTES", "counter", "The number of bytes of active NvLink rx data."),
)
DCGM_CONFIGMAP = "dcgm-metrics"
DCGM_CSV_KEY = "dcgm-metrics.csv"
DCGM_COLLECTORS_PATH = f"/etc/dcgm-exporter/{DCGM_CSV_KEY}"
# Xids that take a GPU out of service until it is reset or replaced (NVIDIA Xid catalog): 48 DBE,
# 63/64 row remapping, 74 NVLink, 79 fallen off the bus, 92 high SBE rate, 94/95 contained and
# uncontained ECC, 119/120 GSP.
FATAL_XIDS = (48, 63, 64, 74, 79, 92, 94, 95, 119, 120)
GPU_LABELS = "Hostname, gpu, UUID"


def gpu_alert_rules(cluster: Cluster) -> list[dict]:
    """Alert rules over the DCGM fields above: Xid, ECC/row remapping, thermal, lost GPUs."""
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None
    temp = k8s.gpu_temp_alert_c
    fatal = ", ".join(str(x) for x in FATAL_XIDS)

    def rule(alert: str, expr: str, severity: str, summary: str, description: str, for_: str = "0m") -> dict:
        return {"alert": alert, "expr": expr, "for": for_, "labels": {"severity": severity, "component": "gpu"},
                "annotations": {"summary": summary, "description": description}}

    xid = [
        rule("GpuXidFatal", " or ".join(f"DCGM_FI_DEV_XID_ERRORS == {x}" for x in FATAL_XIDS),
             "critical", "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} reported fatal Xid {{ $value }}",
             f"Xids {fatal} take the GPU out of service: drain the node, then reset or replace the GPU."),
        rule("GpuXidError", "DCGM_FI_DEV_XID_ERRORS > 0",
             "warning", "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} reported Xid {{ $value }}",
             "Look the Xid up in NVIDIA's Xid catalog; application Xids (13, 31, 43) point at the workload.", "1m"),
    ]
    ecc = [
        rule("GpuEccDoubleBitErrors", "increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL[10m]) > 0",
             "critical", "Uncorrectable ECC errors on GPU {{ $labels.gpu }} of {{ $labels.Hostname }}",
             "Double-bit ECC errors since the last reset: the running job's results are suspect; drain the node."),
        rule("GpuRowRemapFailure", "DCGM_FI_DEV_ROW_REMAP_FAILURE > 0",
             "critical", "Row remapping failed on GPU {{ $labels.gpu }} of {{ $labels.Hostname }}",
             "The GPU has no spare rows left: replace it (RMA)."),
        rule("GpuUncorrectableRowsRemapped", "increase(DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS[1h]) > 0",
             "warning", "Rows remapped after uncorrectable errors on {{ $labels.Hostname }} GPU {{ $labels.gpu }}",
             "A GPU reset is needed for the remapping to take effect: drain the node and reset the GPU."),
        rule("GpuEccSingleBitStorm", "rate(DCGM_FI_DEV_ECC_SBE_VOL_TOTAL[5m]) > 1",
             "warning", "Many correctable ECC errors on GPU {{ $labels.gpu }} of {{ $labels.Hostname }}",
             "More than one corrected error per second for 5 minutes; watch for Xid 92/94.", "5m"),
    ]
    thermal = [
        rule("GpuTemperatureHigh", f"DCGM_FI_DEV_GPU_TEMP > {temp}",
             "warning", "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} at {{ $value }} C",
             f"Above {temp} C for 5 minutes: check the cooling loop and fans of the node.", "5m"),
        rule("GpuMemoryTemperatureHigh", f"DCGM_FI_DEV_MEMORY_TEMP > {temp + 10}",
             "warning", "HBM of GPU {{ $labels.gpu }} on {{ $labels.Hostname }} at {{ $value }} C",
             f"HBM above {temp + 10} C for 5 minutes.", "5m"),
        rule("GpuThermalThrottling", "rate(DCGM_FI_DEV_THERMAL_VIOLATION[5m]) > 0",
             "warning", "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} is thermally throttled",
             "Clocks are reduced for heat: one slow GPU slows every collective of its job.", "10m"),
    ]
    health = [
        rule("GpuNvlinkErrors", "increase(DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL[10m]) > 100",
             "warning", "NVLink CRC errors on GPU {{ $labels.gpu }} of {{ $labels.Hostname }}",
             "Persistent NVLink CRC errors degrade all-reduce bandwidth; check the baseboard.", "10m"),
    ]
    counts = {g.gpus_per_node for g in _gpu_groups(cluster)}
    if len(counts) == 1:
        n = counts.pop()
        health.append(rule("GpuMissing", f"count by (Hostname) (DCGM_FI_DEV_GPU_TEMP) < {n}",
                           "critical", "{{ $labels.Hostname }} reports {{ $value }} GPUs",
                           f"Nodes of this cluster have {n} GPUs: one fell off the bus or its driver failed.",
                           "5m"))
    return [
        {"name": "gpu-xid", "rules": xid},
        {"name": "gpu-ecc", "rules": ecc},
        {"name": "gpu-thermal", "rules": thermal},
        {"name": "gpu-health", "rules": health},
    ]


def render_monitoring(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None
    values = {
        "crds": {"enabled": True},
        "prometheus": {"prometheusSpec": {
            "retention": f"{k8s.prometheus_retention_days}d",
            # select every ServiceMonitor/PodMonitor/PrometheusRule, not only the chart's own
            "serviceMonitorSelectorNilUsesHelmValues": False,
            "podMonitorSelectorNilUsesHelmValues": False,
            "ruleSelectorNilUsesHelmValues": False,
            "probeSelectorNilUsesHelmValues": False,
        }},
        "alertmanager": {"enabled": True},
        "grafana": {"enabled": True},
        "prometheus-node-exporter": {"tolerations": [{"operator": "Exists"}]},
    }
    service_monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta("nvidia-dcgm-exporter", spec.namespace),
        "spec": {
            "selector": {"matchLabels": {"app": "nvidia-dcgm-exporter"}},
            "namespaceSelector": {"matchNames": [component_spec("gpu-operator").namespace]},
            "endpoints": [{"port": "gpu-metrics", "path": "/metrics", "interval": "15s", "honorLabels": True}],
        },
    }
    rules = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta("gpu-health", spec.namespace),
        "spec": {"groups": gpu_alert_rules(cluster)},
    }
    return {
        "values.yaml": _values(cluster, spec, values),
        "dcgm-exporter-servicemonitor.yaml": _objects(cluster, "DCGM exporter scrape", [service_monitor]),
        "gpu-alerts.yaml": _objects(cluster, "GPU alert rules", [rules]),
    }


# ------------------------------------------------------------------ GPU Operator

def render_gpu_operator(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    bp = cluster.blueprint
    k8s = bp.kubernetes
    assert k8s is not None
    driver: dict = {"enabled": k8s.gpu_driver == "operator"}
    if k8s.gpu_driver == "operator":
        # GPUDirect RDMA: nvidia-peermem against the DOCA-OFED the host roles install
        driver.update({"version": bp.versions.nvidia_driver, "rdma": {"enabled": True, "useHostMofed": True}})
    values = {
        "operator": {"defaultRuntime": "containerd"},
        "driver": driver,
        "toolkit": {"enabled": True, "env": [
            # a drop-in the containerd role's config.toml imports: Ansible keeps owning config.toml
            {"name": "CONTAINERD_CONFIG", "value": "/etc/containerd/conf.d/99-nvidia.toml"},
            {"name": "CONTAINERD_SOCKET", "value": "/run/containerd/containerd.sock"},
        ]},
        "devicePlugin": {"enabled": True},
        "dcgmExporter": {
            "enabled": True,
            "config": {"name": DCGM_CONFIGMAP},
            "env": [{"name": "DCGM_EXPORTER_COLLECTORS", "value": DCGM_COLLECTORS_PATH}],
            "serviceMonitor": {"enabled": False},  # ours, in monitoring/
        },
        "mig": {"strategy": k8s.mig_strategy},
        "migManager": {"enabled": k8s.mig_strategy != "none"},
        "nfd": {"enabled": True},
        "gfd": {"enabled": True},
        "daemonsets": {"tolerations": [GPU_TOLERATION]},
    }
    csv = "".join(f"{f.name}, {f.kind}, {f.help}\n" for f in DCGM_FIELDS)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(DCGM_CONFIGMAP, spec.namespace),
        "data": {DCGM_CSV_KEY: "# DCGM fields the exporter collects (aiinfra.render.platform.DCGM_FIELDS)\n" + csv},
    }
    return {"values.yaml": _values(cluster, spec, values),
            "dcgm-metrics.yaml": _objects(cluster, "DCGM exporter metrics", [configmap])}


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
        return {"image": NETWORK_OPERATOR_IMAGES[key], "repository": NETWORK_OPERATOR_IMAGE_REPOSITORY,
                "version": tag}

    values = {
        "nfd": {"enabled": False},  # the GPU Operator's node-feature-discovery serves both operators
        "sriovNetworkOperator": {"enabled": k8s.rdma == "sriov"},
        "operator": {"tolerations": [GPU_TOLERATION]},
    }
    policy_spec: dict = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": _node_in_groups(groups)},
        "tolerations": [GPU_TOLERATION],
        "secondaryNetwork": {"multus": image("multus"), "cniPlugins": image("cni_plugins")},
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
        for rail, (devs, pod_range) in enumerate(zip(netdevs, ranges, strict=False)):
            networks.append({
                "apiVersion": "mellanox.com/v1alpha1", "kind": "IPoIBNetwork",
                "metadata": _meta(f"ipoib-rail{rail}"),
                "spec": {"networkNamespace": "", "master": devs[0], "ipam": _ipam(pod_range)},
            })
    else:
        resources = [{"resourcePrefix": "nvidia.com", "resourceName": f"rail{r}_vf",
                      "selectors": {"vendors": ["15b3"], "pfNames": devs, "isRdma": True}}
                     for r, devs in enumerate(netdevs)]
        policy_spec["sriovDevicePlugin"] = {**image("sriov_device_plugin"),
                                            "config": json.dumps({"resourceList": resources}, sort_keys=True)}
        for rail, pod_range in enumerate(ranges):
            networks.append({
                "apiVersion": "mellanox.com/v1alpha1", "kind": "HostDeviceNetwork",
                "metadata": _meta(f"hostdev-rail{rail}"),
                "spec": {"networkNamespace": "", "resourceName": f"nvidia.com/rail{rail}_vf",
                         "ipam": _ipam(pod_range)},
            })
    # one attachment definition per workload namespace would multiply objects; "" puts it in
    # default and pods name it as default/<network>
    for net in networks:
        net["spec"]["networkNamespace"] = "default"
    policy = {"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
              "metadata": _meta("nic-cluster-policy"), "spec": policy_spec}
    files = {"values.yaml": _values(cluster, spec, values),
             "nic-cluster-policy.yaml": _objects(cluster, "NVIDIA Network Operator policy", [policy])}
    if networks:
        files["rail-networks.yaml"] = _objects(cluster, "secondary networks, one per rail", networks)
    return files


def _ipam(pod_range: str) -> str:
    """whereabouts IPAM: cluster-wide allocation from the rail's pod range (no gateway: the rail
    subnet is flat and routes nowhere)."""
    return json.dumps({"type": "whereabouts", "range": pod_range}, sort_keys=True)


# ------------------------------------------------------------------ Lustre

def render_lustre(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    bp = cluster.blueprint
    lustre = bp.storage.lustre
    k8s = bp.kubernetes
    if lustre is None or k8s is None:
        return {}
    capacity = str(lustre.capacity)
    objects: list[dict] = []
    for ns in WORKLOAD_NAMESPACES:
        pv_name = f"lustre-{lustre.fsname}-{ns.name}"
        pv_spec: dict = {
            "capacity": {"storage": capacity},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "volumeMode": "Filesystem",
            "claimRef": {"namespace": ns.name, "name": LUSTRE_PVC},
        }
        if k8s.lustre_volumes == "static":
            # the lustre_client role mounts the file system on the host; pods see that mount
            pv_spec["hostPath"] = {"path": lustre.mountpoint, "type": "Directory"}
            pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": LUSTRE_LABEL, "operator": "In", "values": ["true"]}]}]}}
        else:  # aiinfra.checks.kubernetes refuses csi without a driver name
            pv_spec["csi"] = {"driver": k8s.lustre_csi_driver, "volumeHandle": f"{lustre.fsname}-{ns.name}",
                              "volumeAttributes": {"fsName": lustre.fsname, "mgsNids": ":".join(lustre.mgs_nids),
                                                   "mountOptions": ",".join(lustre.mount_options)}}
        objects.append({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": _meta(pv_name), "spec": pv_spec})
        objects.append({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(LUSTRE_PVC, ns.name),
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv_name,
                     "volumeMode": "Filesystem", "resources": {"requests": {"storage": capacity}}},
        })
    return {"lustre.yaml": _objects(cluster, f"Lustre {lustre.fsname} volumes", objects)}


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
        queue = ns.name.removeprefix("aiinfra-")
        share = shares.get(queue, 0.0)  # type: ignore[call-overload]
        out[queue] = {f: {"nodes": math.floor(n * share + 1e-9)} for f, n in nodes_per_flavor.items()}
    return out


def render_kueue(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    groups = _gpu_groups(cluster)
    values = {
        "enablePrometheus": True,
        "controllerManager": {"replicas": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}},
    }
    files = {"values.yaml": _values(cluster, spec, values)}
    if not groups:
        return files
    by_flavor: dict[str, Group] = {}
    for g in groups:
        by_flavor.setdefault(flavor_name(g), g)
    topology = {"apiVersion": KUEUE_API, "kind": "Topology", "metadata": _meta(TOPOLOGY_NAME),
                "spec": {"levels": [{"nodeLabel": level.node_label} for level in topology_levels(cluster)]}}
    flavors = [{
        "apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": _meta(name),
        "spec": {"nodeLabels": {GPU_MODEL_LABEL: name}, "tolerations": [GPU_TOLERATION],
                 "topologyName": TOPOLOGY_NAME},
    } for name in sorted(by_flavor)]
    quotas = queue_quotas(cluster)
    cluster_queues, local_queues = [], []
    for ns in WORKLOAD_NAMESPACES:
        queue = ns.name.removeprefix("aiinfra-")
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
            "apiVersion": KUEUE_API, "kind": "ClusterQueue", "metadata": _meta(queue),
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
        local_queues.append({"apiVersion": KUEUE_API, "kind": "LocalQueue", "metadata": _meta(queue, ns.name),
                             "spec": {"clusterQueue": queue}})
    files["topology.yaml"] = _objects(cluster, "Kueue topology of the fabric", [topology])
    files["flavors.yaml"] = _objects(cluster, "Kueue resource flavors, one per GPU model", flavors)
    files["queues.yaml"] = _objects(cluster, "Kueue queues and GPU quotas", cluster_queues + local_queues)
    return files


# ------------------------------------------------------------------ LWS, KEDA

def render_lws(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    return {"values.yaml": _values(cluster, spec, {"replicaCount": 2})}


def render_keda(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    return {"values.yaml": _values(cluster, spec, {"operator": {"replicaCount": 2}})}


RENDERERS = {
    "monitoring": render_monitoring,
    "gpu-operator": render_gpu_operator,
    "network-operator": render_network_operator,
    "lustre": render_lustre,
    "kueue": render_kueue,
    "lws": render_lws,
    "keda": render_keda,
}

# files of a component folder that are chart values, not objects (kustomize does not list them)
VALUES_FILE = "values.yaml"


@renderer("k8s-platform", "Kubernetes platform components: GPU/Network Operator, Lustre, Kueue, LWS, monitoring")
def render_platform(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    if not uses_kubernetes(cluster) or cluster.blueprint.kubernetes is None:
        return {}
    out: Artifacts = {}
    for spec in COMPONENTS:
        fn = RENDERERS.get(spec.name)
        if fn is None:
            continue
        files = fn(cluster, spec)
        if files:
            out.update(component(spec.name, files, cluster.env, values=[VALUES_FILE]))
    return out
