"""Where the host roles run each Prometheus exporter outside Kubernetes: one answer for the
renderer (scrape targets, alerts) and the checks (every exporter that runs is pinned)."""

from __future__ import annotations

from aiinfra.spec.cluster import Cluster


def host_exporter_hosts(cluster: Cluster) -> dict[str, list[str]]:
    """Exporter (key of versions.exporters) -> the hosts that run it, as the roles' defaults choose
    them: dcgm-exporter on GPU nodes that are not Kubernetes workers (roles/dcgm), node-exporter on
    every host without a kubelet (roles/node_exporter; in Kubernetes the chart's runs), the Slurm
    exporter on the Slurm controllers (roles/slurm_exporter). Blueprint order."""
    workers = {h for g in cluster.groups_for_scheduler("kubernetes") for h in g.hosts}
    kubelet = workers | set(cluster.hosts_with_role("k8s_control_plane"))
    return {
        "dcgm-exporter": [h for g in cluster.groups.values() if g.gpus_per_node for h in g.hosts if h not in workers],
        "node-exporter": [h for h in cluster.hosts if h not in kubelet],
        "slurm-exporter": cluster.hosts_with_role("slurm_controller"),
    }
