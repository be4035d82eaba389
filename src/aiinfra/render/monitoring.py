"""Monitoring of the whole cluster: the kube-prometheus-stack component (``k8s/monitoring/``) and
what the hosts outside Kubernetes need for it (``monitoring/``).

- Kubernetes nodes: the chart's node-exporter and the GPU Operator's dcgm-exporter, scraped through
  ServiceMonitors that attach the node's labels (node group, scalable unit) to every series.
- Hosts outside Kubernetes (Slurm nodes, controllers, login and service hosts): dcgm-exporter
  (roles/dcgm), node-exporter (roles/node_exporter) and the Slurm exporter on the controllers
  (roles/slurm_exporter), scraped at their management addresses. The targets are a file_sd file per
  exporter in the ConfigMap ``host-scrape-targets``, which Prometheus mounts (``prometheusSpec.configMaps``)
  and ``prometheusSpec.additionalScrapeConfigs`` reads; each target carries node, node group and SU.
- Alerts (PrometheusRules): GPU Xid/ECC/row remapping/NVLink/thermal, InfiniBand ports (state, rate,
  link-down and error counters of node-exporter's infiniband collector), Slurm drained/down nodes,
  and host exporters that stop answering.
- Grafana dashboards as code: JSON built here, one ConfigMap each, labelled for the chart's Grafana
  sidecar (GPUs, fabric, Slurm, vLLM).

Every metric a rule or a dashboard reads is a metric of its exporter at the pinned version
(:mod:`aiinfra.catalog.monitoring`; tests/k8s/test_monitoring.py checks it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiinfra.catalog.engines import TTFT_METRIC, WAITING_METRIC
from aiinfra.catalog.k8s_resources import NODE_GROUP_LABEL, SU_LABEL
from aiinfra.catalog.links import link_rate
from aiinfra.catalog.monitoring import port
from aiinfra.catalog.platform import ComponentSpec, component_spec
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.monitoring import host_exporter_hosts
from aiinfra.render import Artifacts, renderer
from aiinfra.render.k8s_objects import header, meta, objects_file, values_file
from aiinfra.render.k8s_topology import kubernetes_groups
from aiinfra.spec.cluster import Cluster, su_name


@dataclass(frozen=True)
class DcgmField:
    name: str
    kind: str  # gauge | counter
    help: str


# The DCGM exporter collects these fields, in Kubernetes (the GPU Operator's metrics ConfigMap) and on
# the hosts outside it (monitoring/dcgm-counters.csv, copied by the dcgm role), and the alerts and
# dashboards use them: one list, so an alert never waits on a metric nobody collects. Every name is a
# field of the pinned dcgm-exporter (go-dcgm's field map: catalog/data/monitoring_metrics.json).
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
    DcgmField("DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", "counter", "Total number of NVLink data CRC errors."),
    DcgmField("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "counter", "Total number of NVLink recovery errors."),
    DcgmField("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active."),
    DcgmField("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active."),
    DcgmField("DCGM_FI_PROF_DRAM_ACTIVE", "gauge", "Ratio of cycles the device memory interface is active."),
    DcgmField("DCGM_FI_PROF_NVLINK_TX_BYTES", "counter", "The number of bytes of active NvLink tx data."),
    DcgmField("DCGM_FI_PROF_NVLINK_RX_BYTES", "counter", "The number of bytes of active NvLink rx data."),
)
# the ConfigMap that carries them: aiinfra.catalog.platform.DCGM_CONFIGMAP (the GPU Operator's values name it)
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
        return _rule("gpu", alert, expr, severity, summary, description, for_)

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
        rule("GpuNvlinkErrors", "increase(DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL[10m]) > 100"
             " or increase(DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL[10m]) > 100",
             "warning", "NVLink CRC errors on GPU {{ $labels.gpu }} of {{ $labels.Hostname }}",
             "Persistent NVLink CRC errors degrade all-reduce bandwidth; check the baseboard.", "10m"),
        rule("GpuNvlinkRecoveryErrors", "increase(DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL[10m]) > 0",
             "critical", "NVLink link recovery on GPU {{ $labels.gpu }} of {{ $labels.Hostname }}",
             "An NVLink went through recovery (often with Xid 74): drain the node and run `dcgmi diag -r 2`."),
    ]
    counts = {g.gpus_per_node for g in [g for g in kubernetes_groups(cluster) if g.gpu is not None]}
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


def _rule(component: str, alert: str, expr: str, severity: str, summary: str, description: str,
          for_: str = "0m") -> dict:
    return {"alert": alert, "expr": expr, "for": for_, "labels": {"severity": severity, "component": component},
            "annotations": {"summary": summary, "description": description}}


def dcgm_counters_csv() -> str:
    """The dcgm-exporter collectors file (field, Prometheus type, help), both sides."""
    return "".join(f"{f.name}, {f.kind}, {f.help}\n" for f in DCGM_FIELDS)


# ------------------------------------------------------------------ hosts outside Kubernetes

SCRAPE_CONFIGMAP = "host-scrape-targets"
# prometheus-operator (v0.79.2, the chart's appVersion) mounts each ConfigMap of
# prometheusSpec.configMaps at /etc/prometheus/configmaps/<name> (pkg/prometheus/common.go configmapsDir)
TARGETS_DIR = f"/etc/prometheus/configmaps/{SCRAPE_CONFIGMAP}"
# Prometheus job of each exporter on the hosts; the exporter is its key in versions.exporters
HOST_JOBS = {"dcgm-exporter": "host-dcgm-exporter", "node-exporter": "host-node-exporter",
             "slurm-exporter": "slurm-exporter"}
# labels every series of a node carries, both sides (Kubernetes: from the node's labels)
NODE_LABEL, GROUP_LABEL, SU_TARGET_LABEL, RAIL_LABEL = "node", "node_group", "su", "rail"


def _target_labels(cluster: Cluster, name: str) -> dict[str, str]:
    host = cluster.hosts[name]
    labels = {NODE_LABEL: name, GROUP_LABEL: host.group}
    if host.su is not None:
        labels[SU_TARGET_LABEL] = su_name(host.su)
    return labels


_ENCODE = json.JSONEncoder(sort_keys=True).encode  # one encoder for 60,000 lines at 32,768 nodes


def scrape_targets(cluster: Cluster) -> dict[str, str]:
    """file_sd content per exporter: a YAML list of one entry per host (management address, node
    labels), one host per line in JSON flow style (keys sorted): a host added, removed or changed
    is a one-line diff (a JSON array would also change its neighbour's comma). A host's labels are
    encoded once for all the exporters it runs."""
    exporters = cluster.blueprint.versions.exporters
    labels: dict[str, str] = {}
    out = {}
    for exporter, hosts in host_exporter_hosts(cluster).items():
        if not hosts or exporter not in exporters:
            continue
        p = port(exporter, exporters[exporter])
        lines = []
        for h in hosts:
            text = labels.get(h)
            if text is None:
                text = labels[h] = _ENCODE(_target_labels(cluster, h))
            target = _ENCODE(f"{cluster.hosts[h].management_address}:{p}")
            lines.append(f'- {{"labels": {text}, "targets": [{target}]}}\n')
        out[exporter] = "".join(lines)
    return out


def rail_relabelings(cluster: Cluster, camel: bool = False) -> list[dict]:
    """Metric relabelings that give every InfiniBand series of a rail HCA its rail number (the fabric
    model's HCA -> rail of each node group), in Prometheus' or the Operator's spelling."""
    groups: dict[tuple[str, int], set[str]] = {}
    for g in cluster.groups.values():
        for hca_port in cluster.hosts[g.hosts[0]].rails if g.hosts else ():
            groups.setdefault((hca_port.hca, hca_port.rail), set()).add(g.name)
    source, target = ("sourceLabels", "targetLabel") if camel else ("source_labels", "target_label")
    return [{source: [GROUP_LABEL, "device"], "regex": f"({'|'.join(sorted(names))});{hca}", target: RAIL_LABEL,
             "replacement": str(rail), "action": "replace"}
            for (hca, rail), names in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))]


def host_scrape_configs(cluster: Cluster, targets: dict[str, list[dict]]) -> list[dict]:
    """prometheusSpec.additionalScrapeConfigs: one job per exporter that runs on hosts outside Kubernetes."""
    configs = []
    for exporter in sorted(targets):
        job: dict = {"job_name": HOST_JOBS[exporter],
                     "file_sd_configs": [{"files": [f"{TARGETS_DIR}/{exporter}.yaml"]}]}
        if exporter == "node-exporter" and rail_relabelings(cluster):
            job["metric_relabel_configs"] = rail_relabelings(cluster)
        configs.append(job)
    return configs


def _node_relabelings() -> list[dict]:
    """ServiceMonitor relabelings: the node, its node group and SU from the Kubernetes node's labels
    (attachMetadata.node), under the names the host targets use."""
    def label(name: str) -> str:  # Prometheus' sanitised form of a node label in __meta_kubernetes_node_label_*
        return "__meta_kubernetes_node_label_" + "".join(c if c.isalnum() else "_" for c in name)

    return [
        {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": NODE_LABEL, "action": "replace"},
        {"sourceLabels": [label(NODE_GROUP_LABEL)], "targetLabel": GROUP_LABEL, "action": "replace"},
        {"sourceLabels": [label(SU_LABEL)], "targetLabel": SU_TARGET_LABEL, "action": "replace"},
    ]


# ------------------------------------------------------------------ alert rules beyond the GPU

# node_exporter's infiniband collector (procfs): state_id 4 is ACTIVE, physical_state_id 5 LinkUp,
# rate_bytes_per_second is Gb/s x 125000000.
IB_ACTIVE, IB_LINK_UP, IB_BYTES_PER_GBIT = 4, 5, 125_000_000
IB_ERROR_COUNTERS = {
    "node_infiniband_symbol_error_total": "symbol errors (bad lanes, cable or transceiver)",
    "node_infiniband_link_error_recovery_total": "link error recoveries",
    "node_infiniband_local_link_integrity_errors_total": "local link integrity errors",
    "node_infiniband_port_errors_received_total": "received packets with errors",
    "node_infiniband_excessive_buffer_overrun_errors_total": "buffer overruns",
}


def fabric_alert_rules(cluster: Cluster) -> list[dict]:
    def rule(alert: str, expr: str, severity: str, summary: str, description: str, for_: str = "0m") -> dict:
        return _rule("fabric", alert, expr, severity, summary, description, for_)

    where = "{{ $labels.device }} port {{ $labels.port }} of {{ $labels.node }}"
    rules = [
        rule("InfinibandPortNotActive", f"node_infiniband_state_id != {IB_ACTIVE}", "critical",
             f"{where} is not Active (state {{{{ $value }}}})",
             "A rail port that is not Active takes the node's GPU out of collectives: check `ibstat`, the cable "
             "and the subnet manager; drain the node until it is back.", "5m"),
        rule("InfinibandPhysicalLinkDown", f"node_infiniband_physical_state_id != {IB_LINK_UP}", "critical",
             f"{where} has no physical link (state {{{{ $value }}}})",
             "Physical state is not LinkUp: reseat or replace the cable or transceiver.", "5m"),
        rule("InfinibandLinkDowned", "increase(node_infiniband_link_downed_total[10m]) > 0", "warning",
             f"{where} went down and came back",
             "A flapping link stalls NCCL collectives: watch the symbol errors of this port."),
    ]
    for metric, what in sorted(IB_ERROR_COUNTERS.items()):
        name = "Infiniband" + "".join(w.capitalize() for w in metric.removeprefix("node_infiniband_")
                                      .removesuffix("_total").split("_"))
        rules.append(rule(name, f"increase({metric}[10m]) > 10", "warning", f"{what} on {where}",
                          "Errors that keep growing on one port mean a bad link: check it with `perfquery` "
                          "and replace the cable or transceiver.", "10m"))
    rates = sorted({(g.name, link_rate(g.node_type.rails.rate).gbps) for g in cluster.groups.values()
                    if g.node_type.rails})
    for group, gbps in rates:
        rules.append(rule("InfinibandRateDegraded",
                          f'node_infiniband_rate_bytes_per_second{{{GROUP_LABEL}="{group}", {RAIL_LABEL}!=""}}'
                          f" < {gbps * IB_BYTES_PER_GBIT}",
                          "warning", f"{where} runs below {gbps} Gb/s",
                          f"Rail ports of node group {group} are declared at {gbps} Gb/s: a slower link slows "
                          "every collective of its job; check the cable and `ibstat`.", "10m"))
    return [{"name": "infiniband", "rules": rules}]


# sinfo %T states of nodes out of service (the exporter's default CLI mode), with the '*' of a node
# that does not respond
DRAIN_STATES, DOWN_STATES = "drain(ed|ing)\\\\*?", "(down|fail|failing|not_responding)\\\\*?"


def slurm_alert_rules(cluster: Cluster) -> list[dict]:
    def rule(alert: str, expr: str, severity: str, summary: str, description: str, for_: str = "0m") -> dict:
        return _rule("slurm", alert, expr, severity, summary, description, for_)

    # every controller runs an exporter that reads the same slurmctld: max over them
    rules = [
        rule("SlurmNodesDrained", f'max by (state) (slurm_node_count_per_state{{state=~"{DRAIN_STATES}"}}) > 0',
             "warning", "{{ $value }} Slurm nodes are {{ $labels.state }}",
             "`sinfo -R` gives each node's reason (the node health check drains with it); resume with "
             "`aiinfra node resume` once fixed.", "10m"),
        rule("SlurmNodesDown", f'max by (state) (slurm_node_count_per_state{{state=~"{DOWN_STATES}"}}) > 0',
             "critical", "{{ $value }} Slurm nodes are {{ $labels.state }}",
             "slurmctld lost these nodes: check slurmd, the management network and the BMC.", "5m"),
        rule("SlurmExporterScrapeErrors", "increase(slurm_node_scrape_error[10m]) > 0 "
             "or increase(slurm_job_scrape_error[10m]) > 0", "warning",
             "The Slurm exporter on {{ $labels.node }} cannot read sinfo/squeue",
             "The Slurm dashboards and alerts are blind: check slurmctld and the exporter's journal.", "10m"),
    ]
    return [{"name": "slurm", "rules": rules}]


def host_alert_rules(targets: dict[str, str]) -> list[dict]:
    """An exporter outside Kubernetes that stops answering (inside, the chart's own rules watch targets)."""
    jobs = "|".join(HOST_JOBS[exporter] for exporter in sorted(targets))
    return [{"name": "host-exporters", "rules": [_rule(
        "host", "HostExporterDown", f'up{{job=~"{jobs}"}} == 0', "warning",
        "{{ $labels.job }} on {{ $labels.node }} does not answer",
        "Prometheus cannot scrape this exporter: the node is down, or the exporter's service stopped.", "10m")]}]


# ------------------------------------------------------------------ Grafana dashboards

DASHBOARD_LABEL = {"grafana_dashboard": "1"}  # kube-prometheus-stack 67.8.0 grafana.sidecar.dashboards.label/labelValue
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | table


def _dashboard(uid: str, title: str, panels: list[Panel], variables: list[tuple[str, str]]) -> dict:
    """A Grafana dashboard: two panels per row, a Prometheus data source variable and one
    multi-value variable per (name, label_values query)."""
    templating = [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source",
                   "current": {}, "hide": 0}]
    for name, query in variables:
        templating.append({"name": name, "type": "query", "datasource": DATASOURCE, "query": query,
                           "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*", "current": {},
                           "sort": 1, "hide": 0})
    out = []
    for i, p in enumerate(panels):
        targets = [{"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}
                   | ({"format": "table", "instant": True} if p.kind == "table" else {})
                   for j, (expr, legend) in enumerate(p.exprs)]
        out.append({"id": i + 1, "type": p.kind, "title": p.title, "datasource": DATASOURCE, "targets": targets,
                    "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                    "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []}, "options": {}})
    return {"uid": uid, "title": title, "tags": ["aiinfra"], "timezone": "utc", "editable": False,
            "schemaVersion": 39, "version": 1, "refresh": "1m", "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": templating}, "panels": out, "annotations": {"list": []}}


def gpu_dashboard() -> dict:
    sel = f'{SU_TARGET_LABEL}=~"$su", {GROUP_LABEL}=~"$node_group"'
    panels = [
        Panel("GPU utilisation by SU", ((f"avg by ({SU_TARGET_LABEL}) (DCGM_FI_DEV_GPU_UTIL{{{sel}}})", "{{su}}"),),
              "percent"),
        Panel("Tensor core activity by SU",
              ((f"avg by ({SU_TARGET_LABEL}) (DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{sel}}})", "{{su}}"),), "percentunit"),
        Panel("GPU memory used", ((f"sum(DCGM_FI_DEV_FB_USED{{{sel}}}) / sum(DCGM_FI_DEV_FB_USED{{{sel}}} + "
                                   f"DCGM_FI_DEV_FB_FREE{{{sel}}})", "used"),), "percentunit"),
        Panel("Nodes with the most GPU memory used",
              ((f"topk(10, max by (Hostname) (DCGM_FI_DEV_FB_USED{{{sel}}}))", "{{Hostname}}"),), "decmbytes"),
        Panel("Power by SU", ((f"sum by ({SU_TARGET_LABEL}) (DCGM_FI_DEV_POWER_USAGE{{{sel}}})", "{{su}}"),),
              "watt"),
        Panel("Hottest GPUs", ((f"topk(10, DCGM_FI_DEV_GPU_TEMP{{{sel}}})", "{{Hostname}} GPU {{gpu}}"),),
              "celsius"),
        Panel("GPUs with an Xid", ((f"DCGM_FI_DEV_XID_ERRORS{{{sel}}} > 0", "{{Hostname}} GPU {{gpu}}"),),
              kind="table"),
        Panel("ECC errors (1 h)", (
            (f"sum by (Hostname) (increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{{{sel}}}[1h])) > 0", "DBE {{Hostname}}"),
            (f"sum by (Hostname) (increase(DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{{{sel}}}[1h])) > 0", "SBE {{Hostname}}"),
        )),
        Panel("Row remapping", (
            (f"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS{{{sel}}} > 0", "uncorrectable {{Hostname}} GPU {{gpu}}"),
            (f"DCGM_FI_DEV_ROW_REMAP_FAILURE{{{sel}}} > 0", "failed {{Hostname}} GPU {{gpu}}"),
        ), kind="table"),
        Panel("NVLink errors (10 min)", (
            (f"sum by (Hostname) (increase(DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL{{{sel}}}[10m])) > 0",
             "CRC flit {{Hostname}}"),
            (f"sum by (Hostname) (increase(DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL{{{sel}}}[10m])) > 0",
             "recovery {{Hostname}}"),
        )),
        Panel("NVLink traffic by SU", (
            (f"sum by ({SU_TARGET_LABEL}) (DCGM_FI_PROF_NVLINK_TX_BYTES{{{sel}}})", "tx {{su}}"),
            (f"sum by ({SU_TARGET_LABEL}) (DCGM_FI_PROF_NVLINK_RX_BYTES{{{sel}}})", "rx {{su}}"),
        ), "Bps"),
        Panel("Throttling (share of time)", (
            (f"sum by (Hostname) (rate(DCGM_FI_DEV_THERMAL_VIOLATION{{{sel}}}[5m])) / 1e6 > 0", "thermal {{Hostname}}"),
            (f"sum by (Hostname) (rate(DCGM_FI_DEV_POWER_VIOLATION{{{sel}}}[5m])) / 1e6 > 0", "power {{Hostname}}"),
        ), "percentunit"),
    ]
    return _dashboard("aiinfra-gpus", "aiinfra / GPUs", panels, [
        ("su", f"label_values(DCGM_FI_DEV_GPU_UTIL, {SU_TARGET_LABEL})"),
        ("node_group", f"label_values(DCGM_FI_DEV_GPU_UTIL, {GROUP_LABEL})")])


def fabric_dashboard() -> dict:
    sel = f'{SU_TARGET_LABEL}=~"$su", {RAIL_LABEL}=~"$rail"'
    panels = [
        Panel("Ports not Active", ((f"count(node_infiniband_state_id{{{sel}}} != {IB_ACTIVE}) or vector(0)",
                                    "ports"),), kind="stat"),
        Panel("Ports not Active (list)", ((f"node_infiniband_state_id{{{sel}}} != {IB_ACTIVE}",
                                           "{{node}} {{device}}"),), kind="table"),
        Panel("Transmit by rail", ((f"sum by ({RAIL_LABEL}) (rate(node_infiniband_port_data_transmitted_bytes_total"
                                    f"{{{sel}}}[5m]))", "rail {{rail}}"),), "Bps"),
        Panel("Receive by rail", ((f"sum by ({RAIL_LABEL}) (rate(node_infiniband_port_data_received_bytes_total"
                                   f"{{{sel}}}[5m]))", "rail {{rail}}"),), "Bps"),
        Panel("Transmit wait (congestion) by SU",
              ((f"sum by ({SU_TARGET_LABEL}) (rate(node_infiniband_port_transmit_wait_total{{{sel}}}[5m]))",
                "{{su}}"),)),
        Panel("Discards", (
            (f"sum by (node, device) (rate(node_infiniband_port_discards_transmitted_total{{{sel}}}[5m])) > 0",
             "tx {{node}} {{device}}"),
            (f"sum by (node, device) (rate(node_infiniband_port_discards_received_total{{{sel}}}[5m])) > 0",
             "rx {{node}} {{device}}"),
        )),
        Panel("Link errors (10 min)", tuple(
            (f"sum by (node, device) (increase({m}{{{sel}}}[10m])) > 0",
             f"{m.removeprefix('node_infiniband_').removesuffix('_total')} {{{{node}}}} {{{{device}}}}")
            for m in ["node_infiniband_link_downed_total", *sorted(IB_ERROR_COUNTERS)])),
        Panel("Port rate", ((f"min by ({RAIL_LABEL}) (node_infiniband_rate_bytes_per_second{{{sel}}})",
                             "rail {{rail}}"),), "Bps"),
    ]
    return _dashboard("aiinfra-fabric", "aiinfra / InfiniBand fabric", panels, [
        ("su", f"label_values(node_infiniband_state_id, {SU_TARGET_LABEL})"),
        ("rail", f"label_values(node_infiniband_state_id, {RAIL_LABEL})")])


def slurm_dashboard() -> dict:
    panels = [
        Panel("Nodes drained", ((f'sum(max by (state) (slurm_node_count_per_state{{state=~"{DRAIN_STATES}"}})) '
                                 "or vector(0)", "drained"),), kind="stat"),
        Panel("Nodes down", ((f'sum(max by (state) (slurm_node_count_per_state{{state=~"{DOWN_STATES}"}})) '
                              "or vector(0)", "down"),), kind="stat"),
        Panel("Nodes by state", (("max by (state) (slurm_node_count_per_state)", "{{state}}"),)),
        Panel("Nodes by partition and state",
              (('max by (partition, state) (slurm_partition_node_count{partition=~"$partition"})',
                "{{partition}} {{state}}"),)),
        Panel("Jobs by state", (('sum by (state) (max by (partition, state) '
                                 '(slurm_partition_job_state_total{partition=~"$partition"}))', "{{state}}"),)),
        Panel("Pending reasons", (("max by (reason) (slurm_pending_reason_total)", "{{reason}}"),)),
        Panel("CPUs by state", (("max by (state) (slurm_cpus_per_state)", "{{state}}"),)),
        Panel("Exporter scrape time", (("max by (node) (slurm_node_scrape_duration)", "sinfo {{node}}"),
                                       ("max by (node) (slurm_job_scrape_duration)", "squeue {{node}}")), "ms"),
    ]
    return _dashboard("aiinfra-slurm", "aiinfra / Slurm", panels, [
        ("partition", "label_values(slurm_partition_node_count, partition)")])


def vllm_dashboard() -> dict:
    sel = 'namespace=~"$namespace", model_name=~"$model"'

    def quantiles(*metrics: str) -> tuple[tuple[str, str], ...]:
        """p50/p95/p99 of a histogram; of the first of ``metrics`` a pod exports (renamed ones)."""
        return tuple((" or ".join(f"histogram_quantile({q}, sum by (le, model_name) (rate({m}_bucket{{{sel}}}[5m])))"
                                  for m in metrics), f"p{int(q * 100)} {{{{model_name}}}}") for q in (0.5, 0.95, 0.99))

    panels = [
        Panel("End-to-end request latency", quantiles("vllm:e2e_request_latency_seconds"), "s"),
        Panel("Time to first token", quantiles(TTFT_METRIC), "s"),
        # vLLM 0.12 hides time_per_output_token (deprecated) behind --show-hidden-metrics-for-version;
        # renamed vllm:inter_token_latency_seconds in 0.11 (vllm-0.12.0 vllm/v1/metrics/loggers.py)
        Panel("Time per output token", quantiles("vllm:inter_token_latency_seconds",
                                                 "vllm:time_per_output_token_seconds"), "s"),
        Panel("Tokens per second", (
            (f"sum by (model_name) (rate(vllm:generation_tokens_total{{{sel}}}[5m]))", "generated {{model_name}}"),
            (f"sum by (model_name) (rate(vllm:prompt_tokens_total{{{sel}}}[5m]))", "prompt {{model_name}}"),
        )),
        Panel("Requests running and waiting", (
            (f"sum by (model_name) (vllm:num_requests_running{{{sel}}})", "running {{model_name}}"),
            (f"sum by (model_name) ({WAITING_METRIC}{{{sel}}})", "waiting {{model_name}}"),
        )),
        # the KV cache gauge was renamed (vLLM 0.10); one of the two exists in each pinned version
        Panel("KV cache used (per pod)", (
            (f"max by (pod) (vllm:kv_cache_usage_perc{{{sel}}} or vllm:gpu_cache_usage_perc{{{sel}}})", "{{pod}}"),
        ), "percentunit"),
        Panel("Preemptions", ((f"sum by (model_name) (rate(vllm:num_preemptions_total{{{sel}}}[5m]))",
                               "{{model_name}}"),)),
        Panel("Queue time", quantiles("vllm:request_queue_time_seconds"), "s"),
    ]
    return _dashboard("aiinfra-vllm", "aiinfra / vLLM serving", panels, [
        ("namespace", "label_values(vllm:num_requests_running, namespace)"),
        ("model", "label_values(vllm:num_requests_running, model_name)")])


DASHBOARDS = {"gpus": gpu_dashboard, "fabric": fabric_dashboard, "slurm": slurm_dashboard, "vllm": vllm_dashboard}


def dashboard_configmaps(namespace: str) -> list[dict]:
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": meta(f"aiinfra-dashboard-{name}", namespace, **DASHBOARD_LABEL),
             "data": {f"aiinfra-{name}.json": json.dumps(build(), indent=1, sort_keys=True) + "\n"}}
            for name, build in DASHBOARDS.items()]


# ------------------------------------------------------------------ the component

def render_monitoring(cluster: Cluster, spec: ComponentSpec) -> dict[str, str]:
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None
    targets = scrape_targets(cluster)
    prometheus_spec: dict = {
        "retention": f"{k8s.prometheus_retention_days}d",
        # select every ServiceMonitor/PodMonitor/PrometheusRule, not only the chart's own
        "serviceMonitorSelectorNilUsesHelmValues": False,
        "podMonitorSelectorNilUsesHelmValues": False,
        "ruleSelectorNilUsesHelmValues": False,
        "probeSelectorNilUsesHelmValues": False,
    }
    if targets:
        prometheus_spec["configMaps"] = [SCRAPE_CONFIGMAP]
        prometheus_spec["additionalScrapeConfigs"] = host_scrape_configs(cluster, targets)
    values = {
        "crds": {"enabled": True},
        "prometheus": {"prometheusSpec": prometheus_spec},
        "alertmanager": {"enabled": True},
        "grafana": {"enabled": True, "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard",
                                                                "labelValue": "1"}}},
        "prometheus-node-exporter": {
            "tolerations": [{"operator": "Exists"}],
            "prometheus": {"monitor": {"attachMetadata": {"node": True}, "relabelings": _node_relabelings(),
                                       "metricRelabelings": rail_relabelings(cluster, camel=True)}},
        },
    }
    service_monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta("nvidia-dcgm-exporter", spec.namespace),
        "spec": {
            "selector": {"matchLabels": {"app": "nvidia-dcgm-exporter"}},
            "namespaceSelector": {"matchNames": [component_spec("gpu-operator").namespace]},
            "attachMetadata": {"node": True},
            "endpoints": [{"port": "gpu-metrics", "path": "/metrics", "interval": "15s", "honorLabels": True,
                           "relabelings": _node_relabelings()}],
        },
    }

    def rules(name: str, groups: list[dict]) -> dict:
        return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                "metadata": meta(name, spec.namespace), "spec": {"groups": groups}}

    files = {
        "values.yaml": values_file(cluster, spec, values),
        "dcgm-exporter-servicemonitor.yaml": objects_file(cluster, "DCGM exporter scrape", [service_monitor]),
        "gpu-alerts.yaml": objects_file(cluster, "GPU alert rules", [rules("gpu-health", gpu_alert_rules(cluster))]),
        "fabric-alerts.yaml": objects_file(cluster, "InfiniBand alert rules",
                                           [rules("fabric-health", fabric_alert_rules(cluster))]),
        "dashboards.yaml": objects_file(cluster, "Grafana dashboards", dashboard_configmaps(spec.namespace)),
    }
    if cluster.blueprint.slurm is not None:
        files["slurm-alerts.yaml"] = objects_file(cluster, "Slurm alert rules",
                                                  [rules("slurm-health", slurm_alert_rules(cluster))])
    if targets:
        files["host-exporter-alerts.yaml"] = objects_file(cluster, "alert rules of the exporters outside Kubernetes",
                                                          [rules("host-exporters", host_alert_rules(targets))])
        configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(SCRAPE_CONFIGMAP, spec.namespace),
                     "data": {f"{exporter}.yaml": text for exporter, text in sorted(targets.items())}}
        files["host-scrape-targets.yaml"] = objects_file(cluster, "Prometheus targets outside Kubernetes",
                                                         [configmap])
    return files


# ------------------------------------------------------------------ host side

@renderer("host-monitoring", "the dcgm-exporter collectors file the dcgm role installs outside Kubernetes")
def render_host_monitoring(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    if not host_exporter_hosts(cluster)["dcgm-exporter"]:
        return {}
    text = (header(cluster, "dcgm-exporter collectors (aiinfra.render.monitoring.DCGM_FIELDS)")
            + "# DCGM field, Prometheus metric type, help message\n" + dcgm_counters_csv())
    return {"monitoring/dcgm-counters.csv": text}
