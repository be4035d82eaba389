"""The validated, derived cluster: what every planner and renderer reads.

Built once (by :mod:`aiinfra.pipeline`) from a Blueprint that passed the ``blueprint`` checks. Hosts are expanded from the
hostlists, each gets its addresses and (GPU nodes) its SU; its leaves, spine groups and IPoIB addresses per rail
follow from the SU and index through its group's :class:`~aiinfra.spec.fabric.RailPlan` when asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from ClusterShell.NodeSet import NodeSet

from aiinfra.catalog.gpus import GpuModel, resolve_gpu
from aiinfra.catalog.links import link_rate
from aiinfra.spec import addressing
from aiinfra.spec.fabric import (
    FabricSummary,
    RailPlan,
    RailPort,
    default_sus_per_spine_group,
    ipoib_netdev,
    spine_group_of,
    su_name,
    summarize,
)
from aiinfra.spec.hostlists import expand, fold
from aiinfra.spec.models import Blueprint, NodeGroup, NodeState, NodeType


class Host(NamedTuple):
    """One host of the cluster (a named tuple: a 32,768-node cluster builds one per node)."""

    name: str
    group: str
    index: int  # host index in every network (see addressing): from the name, never from a list position
    management_address: str
    bmc_address: str
    storage_address: str | None
    su: int | None  # 1-based scalable unit, GPU nodes only: from the cabling map or the node's number
    rail_plan: RailPlan | None = None  # the group's, GPU nodes on a fabric only

    @property
    def rails(self) -> tuple[RailPort, ...]:
        """The node's port on every rail: HCA, leaf, spine group (and core group), IPoIB address."""
        if self.rail_plan is None or self.su is None:
            return ()
        return self.rail_plan.ports(self.su, self.index)

    @property
    def rail_addresses(self) -> list[str]:
        """The node's IPoIB address on every rail (``[p.ipoib_address for p in rails]``, without building the ports)."""
        if self.rail_plan is None or self.su is None:
            return []
        return self.rail_plan.addresses(self.index)

    @property
    def spine_group(self) -> int | None:
        """The 1-based spine group of the node's SU in a three-level fabric, else None."""
        plan = self.rail_plan
        if plan is None or self.su is None or plan.levels != 3:
            return None
        return spine_group_of(self.su, plan.sus_per_spine_group)


@dataclass(frozen=True)
class Group:
    """A node group with its resolved node type and hosts."""

    spec: NodeGroup
    node_type: NodeType
    hosts: tuple[str, ...]  # in the rendered files: every host but the decommissioned ones
    states: Mapping[str, NodeState] = field(default_factory=dict)  # hosts drained or down, by name
    su_count: int = 0  # scalable units the group's GPU nodes sit in (spares are held per SU)
    gpu_types: Mapping[str, object] = field(default_factory=dict)  # the blueprint's catalog.gpus

    @property
    def in_service(self) -> tuple[str, ...]:
        """Hosts that take work: neither drained nor down."""
        return tuple(h for h in self.hosts if h not in self.states)

    @property
    def spares(self) -> int:
        return self.spec.spares_per_su * max(self.su_count, 1 if self.hosts else 0)

    @property
    def capacity(self) -> int:
        """Nodes a job or the replicas of a deployment may take: in service, spares held back."""
        return max(len(self.in_service) - self.spares, 0)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def scheduler(self) -> str:
        return self.spec.scheduler

    @property
    def roles(self) -> list[str]:
        return list(self.spec.roles)

    @property
    def gpu(self) -> GpuModel | None:
        return resolve_gpu(self.node_type.gpu.model, self.gpu_types) if self.node_type.gpu else None

    @property
    def gpus_per_node(self) -> int:
        return self.node_type.gpu.count if self.node_type.gpu else 0

    @property
    def storage_netdev(self) -> str | None:
        """The IPoIB interface of the storage port (LNet, NVMe-oF), if the node type has one."""
        return ipoib_netdev(self.node_type.storage_hca) if self.node_type.storage_hca else None

    @property
    def node_count(self) -> int:
        return len(self.hosts)

    @property
    def gpu_count(self) -> int:
        return self.node_count * self.gpus_per_node

    @cached_property
    def hostlist(self) -> str:
        return fold(self.hosts)

    @property
    def ansible_group(self) -> str:
        return ansible_name(self.name)


def ansible_name(name: str) -> str:
    return name.replace("-", "_")


@dataclass
class Cluster:
    """The environment after validation: the single input of plan and render."""

    env: str
    source: str  # the blueprint file, for messages
    blueprint: Blueprint
    groups: dict[str, Group]
    hosts: dict[str, Host] = field(default_factory=dict)
    fabric: FabricSummary | None = None

    @property
    def name(self) -> str:
        return self.blueprint.name

    @cached_property
    def gpu_groups(self) -> list[Group]:
        return [g for g in self.groups.values() if g.gpus_per_node]

    def groups_with_role(self, role: str) -> list[Group]:
        return [g for g in self.groups.values() if role in g.spec.roles]

    def hosts_with_role(self, role: str) -> list[str]:
        return [h for g in self.groups_with_role(role) for h in g.hosts]

    def groups_for_scheduler(self, scheduler: str) -> list[Group]:
        return [g for g in self.groups.values() if g.scheduler == scheduler]

    def hosts_in_su(self, su: int) -> list[str]:
        return [h.name for h in self.hosts.values() if h.su == su]

    @cached_property
    def totals(self) -> dict[str, float | int]:
        gpus = sum(g.gpu_count for g in self.gpu_groups)
        hbm = sum(g.gpu_count * g.gpu.memory_bytes for g in self.gpu_groups)
        bf16 = sum(g.gpu_count * g.gpu.bf16_dense_tflops for g in self.gpu_groups)
        fp8 = sum(g.gpu_count * (g.gpu.fp8_dense_tflops or 0) for g in self.gpu_groups)
        return {
            "nodes": len(self.hosts),
            "gpu_nodes": sum(g.node_count for g in self.gpu_groups),
            "gpus": gpus,
            "hbm_bytes": hbm,
            "peak_bf16_dense_pflops": round(bf16 / 1000, 3),
            "peak_fp8_dense_pflops": round(fp8 / 1000, 3),
            "gpu_tdp_w": sum(g.gpu_count * g.gpu.tdp_w for g in self.gpu_groups),
            "cpu_cores": sum(
                g.node_count * g.node_type.cpu.sockets * g.node_type.cpu.cores_per_socket for g in self.groups.values()
            ),
            "memory_bytes": sum(g.node_count * g.node_type.memory for g in self.groups.values()),
        }


def expand_groups(bp: Blueprint) -> dict[str, tuple[str, ...]]:
    """Hosts of every node group, in hostlist order (decommissioned ones included: their names stay taken)."""
    return {g.name: expand(g.hosts) for g in bp.node_groups}


def node_states(bp: Blueprint) -> dict[str, NodeState]:
    """The blueprint's ``nodes:`` by host (hosts not named are in service)."""
    return {h: state for hostlist, state in bp.nodes.items() for h in NodeSet(hostlist)}


def scalable_units(bp: Blueprint, gpu_hosts: list[str]) -> dict[str, int]:
    """The SU of every GPU node: the cabling map when the blueprint gives one, else from the node's number.

    By number, each name prefix of GPU nodes numbers its SUs from 1 + the SUs of the prefixes before
    it (in blueprint order), so a node's SU never depends on which other nodes exist."""
    if bp.fabric is None:
        return {}
    if bp.fabric.scalable_units:
        by_map = {h: su for su, hostlist in bp.fabric.scalable_units.items() for h in NodeSet(hostlist)}
        return {h: by_map[h] for h in gpu_hosts if h in by_map}
    per_su = bp.fabric.su_nodes
    offsets: dict[str, int] = {}
    spans: dict[str, int] = {}
    out: dict[str, int] = {}
    for host in gpu_hosts:
        name = addressing.split_name(host)
        if name.prefix not in offsets:
            offsets[name.prefix] = sum(-(-span // per_su) for span in spans.values())
            spans[name.prefix] = 10 ** name.width if name.width else 1
        out[host] = offsets[name.prefix] + ((name.number or 1) - 1) // per_su + 1
    return out


def build_cluster(env: str, source: str, bp: Blueprint, expanded: dict[str, tuple[str, ...]],
                  indices: dict[str, int]) -> Cluster:
    """Derive hosts, addresses and fabric. Assumes the ``blueprint`` checks (:mod:`aiinfra.checks.blueprint`) found no error.
    ``indices``: the address plan's host indices (:func:`addressing.address_plan`, computed once for the checks too)."""
    states = node_states(bp)
    gone = {h for h, st in states.items() if st.state == "decommissioned"}
    expanded = {name: tuple(h for h in hosts if h not in gone) for name, hosts in expanded.items()}
    gpu_hosts = [h for g in bp.node_groups if bp.node_types[g.type].rails for h in expanded[g.name]]
    sus = scalable_units(bp, gpu_hosts)
    groups = {
        g.name: Group(g, bp.node_types[g.type], expanded[g.name],
                      {h: states[h] for h in expanded[g.name] if h in states},
                      len({sus[h] for h in expanded[g.name] if h in sus}), bp.catalog.gpus)
        for g in bp.node_groups
    }
    nets = bp.networks

    mgmt_base = addressing.network_base(nets.management.cidr)
    bmc_base = addressing.network_base(nets.bmc.cidr)
    storage_base = addressing.network_base(nets.storage.cidr) if nets.storage else None

    fabric_spec = bp.fabric

    fabric = None
    plans: dict[str, RailPlan] = {}
    if fabric_spec is not None and gpu_hosts:
        rails = max(len(NodeSet(g.node_type.rails.hcas)) for g in groups.values() if g.node_type.rails)
        rate = link_rate(fabric_spec.rate)
        radix = fabric_spec.switch_radix or rate.switch_radix
        per_group = fabric_spec.sus_per_spine_group or default_sus_per_spine_group(radix)
        su_numbers = set(sus.values())
        fabric = summarize(fabric_spec.topology, rate.name, rate.gbps, rails, fabric_spec.su_nodes,
                           len(gpu_hosts), radix, su_count=len(su_numbers), levels=fabric_spec.levels,
                           sus_per_spine_group=per_group,
                           spine_groups_used=len({spine_group_of(su, per_group) for su in su_numbers}))
        rail_nets = addressing.rail_subnets(nets.ipoib.cidr, nets.ipoib.rail_prefix, rails) if nets.ipoib else []
        for group in groups.values():
            if group.node_type.rails:
                plans[group.name] = RailPlan(
                    fabric_spec.topology, fabric_spec.levels, per_group, tuple(NodeSet(group.node_type.rails.hcas)),
                    tuple(int(net.network_address) for net in rail_nets), rail_nets[0].prefixlen if rail_nets else None)

    hosts: dict[str, Host] = {}
    address = addressing.address
    for group in groups.values():
        plan = plans.get(group.name)
        for name in group.hosts:
            index = indices[name]
            su = sus.get(name) if plan is not None else None
            hosts[name] = Host(
                name=name,
                group=group.name,
                index=index,
                management_address=address(mgmt_base, index),
                bmc_address=address(bmc_base, index),
                storage_address=address(storage_base, index) if storage_base is not None else None,
                su=su,
                rail_plan=plan if su is not None else None,
            )
    return Cluster(env=env, source=source, blueprint=bp, groups=groups, hosts=hosts, fabric=fabric)


__all__ = ["Cluster", "Group", "Host", "build_cluster", "expand_groups", "su_name", "ansible_name"]
