"""The Ansible inventory, from the blueprint only (never from gathered facts).

One model serves two outputs: ``manifests/<env>/ansible/inventory.yml`` (static YAML inventory)
and ``aiinfra inventory --list/--host`` (Ansible's dynamic-inventory JSON protocol).

Groups: one per node group (``gpu_train``), one per service role (``slurm_controller``), one per
scheduler (``slurm_compute``, ``k8s_worker``), ``gpu_nodes``, and one per scalable unit
(``su01``...). Host variables carry addresses and rails; node-type facts are group variables.
IPoIB interface names follow :func:`aiinfra.spec.fabric.ipoib_netdev`: ``aiinfra_ipoib_prefix`` (all)
is the prefix the infiniband role names them with, ``aiinfra_storage_netdev`` (group) the storage
port's interface that lustre_client runs LNet on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiinfra.plan.cluster import ClusterPlan
from aiinfra.render import Artifacts, renderer
from aiinfra.render.templates import dump_yaml
from aiinfra.spec.cluster import Cluster, Group, Host, ansible_name, su_name
from aiinfra.spec.fabric import IPOIB_NETDEV_PREFIX

SCHEDULER_GROUPS = {"slurm": "slurm_compute", "kubernetes": "k8s_worker"}
DERIVED_GROUPS = {"gpu_nodes", *SCHEDULER_GROUPS.values()}


@dataclass
class InventoryModel:
    groups: dict[str, list[str]]  # group -> hosts (sorted as in the blueprint)
    group_vars: dict[str, dict]
    hostvars: dict[str, dict]
    all_vars: dict


def host_vars(host: Host) -> dict:
    hv: dict = {
        "ansible_host": host.management_address,
        "aiinfra_node_group": host.group,
        "aiinfra_bmc_address": host.bmc_address,
    }
    if host.storage_address:
        hv["aiinfra_storage_address"] = host.storage_address
    if host.su is not None:
        hv["aiinfra_su"] = host.su
    if host.rails:
        hv["aiinfra_rails"] = [
            {"rail": p.rail, "hca": p.hca, "leaf": p.leaf, "address": p.ipoib_address, "prefix": p.ipoib_prefix}
            for p in host.rails
        ]
    return hv


def group_vars(cluster: Cluster, group: Group) -> dict:
    nt = group.node_type
    gv: dict = {
        "aiinfra_scheduler": group.scheduler,
        "aiinfra_node_type": group.spec.type,
        "aiinfra_memory_bytes": nt.memory,
        "aiinfra_cpu_sockets": nt.cpu.sockets,
        "aiinfra_cpu_cores_per_socket": nt.cpu.cores_per_socket,
        "aiinfra_cpu_threads_per_core": nt.cpu.threads_per_core,
    }
    if nt.gpu:
        gpu = group.gpu
        gv.update({"aiinfra_gpu_model": gpu.name, "aiinfra_gpu_product": gpu.product, "aiinfra_gpu_count": group.gpus_per_node})
    if nt.rails:
        gv["aiinfra_rail_rate"] = nt.rails.rate
    if nt.storage_hca:
        gv["aiinfra_storage_hca"] = nt.storage_hca
        gv["aiinfra_storage_netdev"] = group.storage_netdev
    return gv


def inventory_model(cluster: Cluster) -> InventoryModel:
    groups: dict[str, list[str]] = {}
    gvars: dict[str, dict] = {}
    for group in cluster.groups.values():
        groups[group.ansible_group] = list(group.hosts)
        gvars[group.ansible_group] = group_vars(cluster, group)
        for role in group.roles:
            groups.setdefault(role, []).extend(group.hosts)
        if group.scheduler in SCHEDULER_GROUPS:
            groups.setdefault(SCHEDULER_GROUPS[group.scheduler], []).extend(group.hosts)
        if group.gpus_per_node:
            groups.setdefault("gpu_nodes", []).extend(group.hosts)
    for host in cluster.hosts.values():
        if host.su is not None:
            groups.setdefault(su_name(host.su), []).append(host.name)
    bp = cluster.blueprint
    all_vars = {
        "aiinfra_env": cluster.env,
        "aiinfra_cluster_name": bp.name,
        "aiinfra_versions": bp.versions.model_dump(exclude_none=True),
        "aiinfra_manifests": f"manifests/{cluster.env}",
        "aiinfra_ipoib_prefix": IPOIB_NETDEV_PREFIX,
    }
    return InventoryModel(
        groups=dict(sorted(groups.items())),
        group_vars=gvars,
        hostvars={name: host_vars(h) for name, h in cluster.hosts.items()},
        all_vars=all_vars,
    )


def dynamic_list(model: InventoryModel) -> dict:
    """``--list`` output of Ansible's dynamic-inventory protocol."""
    out: dict = {"_meta": {"hostvars": model.hostvars}, "all": {"children": sorted(model.groups), "vars": model.all_vars}}
    for name, hosts in model.groups.items():
        out[name] = {"hosts": hosts}
        if name in model.group_vars:
            out[name]["vars"] = model.group_vars[name]
    return out


@renderer("inventory", "Ansible inventory: groups per node group, role, scheduler and SU")
def render_inventory(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    """A YAML inventory with one line per host (its variables as a JSON flow mapping, which YAML
    reads as is): fast to write for 16,384 hosts and a one-line diff when a host changes."""
    model = inventory_model(cluster)
    lines = [
        f"# Ansible inventory of '{cluster.env}', rendered by aiinfra from {cluster.source}. Do not edit.",
        "all:",
        "  vars:",
        _indent(dump_yaml(model.all_vars), 4),
        "  hosts:",
    ]
    lines += [f"    {name}: {_flow(hv)}" for name, hv in sorted(model.hostvars.items())]
    lines.append("  children:")
    for name, hosts in model.groups.items():
        lines.append(f"    {name}:")
        if name in model.group_vars:
            lines.append(f"      vars: {_flow(model.group_vars[name])}")
        lines.append("      hosts:")
        lines += [f"        {h}:" for h in hosts]
    return {"ansible/inventory.yml": "\n".join(lines) + "\n"}


def _flow(value: dict) -> str:
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.rstrip("\n").splitlines())


def reserved_group_clash(names: list[str]) -> list[str]:
    """Node group names whose Ansible group would clash with a derived one."""
    from aiinfra.spec.models import NodeRole

    reserved = DERIVED_GROUPS | set(NodeRole.__args__)  # type: ignore[attr-defined]
    return [n for n in names if ansible_name(n) in reserved or ansible_name(n).startswith("su")]
