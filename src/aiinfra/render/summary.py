"""``cluster.json``: what the environment is, for people and for tools (also `aiinfra show --json`)."""

from __future__ import annotations

from aiinfra.plan.cluster import ClusterPlan
from aiinfra.render import Artifacts, renderer
from aiinfra.render.templates import dump_json, fold
from aiinfra.spec.cluster import Cluster, su_name


def summary(cluster: Cluster) -> dict:
    bp = cluster.blueprint
    t = cluster.totals
    out: dict = {
        "env": cluster.env,
        "name": bp.name,
        "description": bp.description,
        "totals": {
            "nodes": t["nodes"],
            "gpu_nodes": t["gpu_nodes"],
            "gpus": t["gpus"],
            "hbm_bytes": t["hbm_bytes"],
            "hbm_tib": round(t["hbm_bytes"] / 2**40, 2),
            "peak_bf16_dense_pflops": t["peak_bf16_dense_pflops"],
            "peak_fp8_dense_pflops": t["peak_fp8_dense_pflops"],
            "gpu_tdp_kw": round(t["gpu_tdp_w"] / 1000, 1),
            "cpu_cores": t["cpu_cores"],
            "memory_bytes": t["memory_bytes"],
        },
        "node_groups": [
            {
                "name": g.name,
                "hosts": g.hostlist,
                "nodes": g.node_count,
                "node_type": g.spec.type,
                "scheduler": g.scheduler,
                "roles": g.roles,
                "gpu_model": g.gpu.name if g.gpu else None,
                "gpus": g.gpu_count,
            }
            for g in cluster.groups.values()
        ],
        "schedulers": {
            s: {"nodes": sum(g.node_count for g in cluster.groups_for_scheduler(s)),
                "gpus": sum(g.gpu_count for g in cluster.groups_for_scheduler(s))}
            for s in ("slurm", "kubernetes")
        },
        "versions": bp.versions.model_dump(exclude_none=True),
    }
    if cluster.fabric:
        f = cluster.fabric
        sus: dict[int, list[str]] = {}
        for h in cluster.hosts.values():
            if h.su is not None:
                sus.setdefault(h.su, []).append(h.name)
        out["fabric"] = {
            "topology": f.topology,
            "rate": f.rate,
            "rate_gbps": f.rate_gbps,
            "rails": f.rails,
            "su_nodes": f.su_nodes,
            "su_count": f.su_count,
            "switch_radix": f.switch_radix,
            "leaf_switches": f.leaf_switches,
            "spine_groups": f.spine_groups,
            "spine_switches": f.spine_switches,
            "node_injection_gbps": f.node_injection_gbps,
            "scalable_units": [{"name": su_name(su), "hosts": fold(hosts), "nodes": len(hosts)}
                               for su, hosts in sorted(sus.items())],
        }
    storage: dict = {}
    if bp.storage.lustre:
        lu = bp.storage.lustre
        storage["lustre"] = {"fsname": lu.fsname, "mountpoint": lu.mountpoint, "capacity_bytes": lu.capacity,
                             "bandwidth_bytes_per_s": lu.bandwidth, "lnet": lu.lnet}
    if bp.storage.gpfs:
        gp = bp.storage.gpfs
        storage["gpfs"] = {"fsname": gp.fsname, "mountpoint": gp.mountpoint, "capacity_bytes": gp.capacity,
                           "bandwidth_bytes_per_s": gp.bandwidth, "cluster_name": gp.cluster_name}
    if bp.storage.nvmeof:
        storage["nvmeof"] = {"transport": bp.storage.nvmeof.transport, "targets": len(bp.storage.nvmeof.targets)}
    out["storage"] = storage
    out["workloads"] = {"training": [j.name for j in bp.training], "serving": [s.name for s in bp.serving]}
    return out


@renderer("summary", "cluster.json: totals, groups, fabric, storage, versions")
def render_summary(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    return {"cluster.json": dump_json(summary(cluster))}
