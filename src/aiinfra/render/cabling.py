"""The cabling plan: every cable of the fabric, from the fabric model of :mod:`aiinfra.spec.cluster`.

The SU, rail, HCA, leaf and spine group of every GPU node port are the ones the inventory,
topology.conf and the topology labels are rendered from (:class:`~aiinfra.spec.fabric.RailPort`);
the switch counts are :class:`~aiinfra.spec.fabric.FabricSummary`'s. This module only numbers the
switch ports, as follows (the ``aiinfra fabric cabling`` CSV and ``docs/operations.md``):

- **Leaf down-ports** ``1..su_nodes``: a node takes the port of its place in its SU, the same on the
  leaf of every rail. The place follows the node itself, like its SU: its position in the SU's
  hostlist of ``fabric.scalable_units`` when the blueprint has the map, else
  ``(number - 1) % su_nodes + 1`` (gpu033 with 32-node SUs: port 1 of su02's leaves). Adding or
  removing a node never moves another node's cable.
- **Leaf up-ports** ``radix/2 + 1 .. radix``: radix/2 uplinks, as the spine count of the model
  assumes. An SU of more than radix/2 nodes (check ``fabric-oversubscribed`` warns) leaves a leaf
  only ``su_nodes + 1 .. radix`` for uplinks: fewer cables, and spare ports on the spines.
- **Spines**: a spine group of ``n`` switches is named ``<group>-01 .. <group>-NN`` (``spine-r0-01``).
  The uplinks of the group's leaves (leaf order: SU, then rail) are dealt out in turn: the k-th uplink
  of the group goes to spine ``k % n``, port ``k // n + 1``. Every spine gets an equal share (within
  one port) and no spine port is used twice. With 32 uplinks and 8 spines, a leaf has 4 cables to
  every spine of its group; adding an SU appends ports, but a new spine (more SUs than the group's
  spines can take) re-deals the group.
- One SU has no spine layer (the model's: its leaves are the whole fabric).
- **Core** (three levels): a spine of a spine group gives ports ``1..radix/2`` to its leaves (dealt as
  above) and ``radix/2 + 1 .. radix`` to the core switches of its plane (``core-r0-01``). The up-ports of
  the plane's spines (order: spine group, spine, port) are dealt out in turn over its core switches as
  the leaf uplinks are over the spines. A ``spine-core`` row names the spine and its port in the
  ``leaf`` and ``leaf_port`` columns (the lower switch), the core switch in ``spine`` and ``spine_port``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import astuple, dataclass, fields

from ClusterShell.NodeSet import NodeSet

from aiinfra.spec import addressing
from aiinfra.spec.cluster import Cluster, Host, su_name
from aiinfra.spec.fabric import core_group_name


@dataclass(frozen=True, slots=True)
class Cable:
    """One cable: a node's rail HCA to a leaf port (``node-leaf``) or a leaf up-port to a spine port."""

    link: str  # "node-leaf" | "leaf-spine" | "spine-core" (three levels)
    su: str
    rail: int
    host: str  # "" for leaf-spine
    hca: str  # "" for leaf-spine
    leaf: str  # the lower switch: the leaf, or for spine-core the spine
    leaf_port: int
    spine: str  # the upper switch: the spine, or for spine-core the core switch; "" for node-leaf
    spine_port: int | None


#: The columns of the cabling CSV. ``host`` and ``su`` are the ones ``aiinfra fabric import-cabling``
#: reads back (rows without a host, the leaf-spine cables, are skipped there).
COLUMNS = tuple(f.name for f in fields(Cable))


def spine_name(group: str, index: int) -> str:
    """``spine-r0-01``: the ``index``-th (0-based) switch of spine group ``group``."""
    return f"{group}-{index + 1:02d}"


def leaf_port(cluster: Cluster, host: Host) -> int:
    """The leaf down-port of ``host`` (the same on every rail): its place in its SU."""
    fab = cluster.blueprint.fabric
    assert fab is not None and host.su is not None
    if fab.scalable_units:
        return list(NodeSet(fab.scalable_units[host.su])).index(host.name) + 1
    number = addressing.split_name(host.name).number or 1
    return (number - 1) % fab.su_nodes + 1


def uplinks(cluster: Cluster) -> int:
    """Uplinks of a leaf: half its ports, or the ports its SU's nodes leave (an oversubscribed leaf)."""
    assert cluster.fabric is not None
    radix = cluster.fabric.switch_radix
    return max(min(radix // 2, radix - cluster.fabric.su_nodes), 0)


def first_uplink(cluster: Cluster) -> int:
    """The leaf port of the first uplink."""
    assert cluster.fabric is not None
    return cluster.fabric.switch_radix - uplinks(cluster) + 1


def gpu_hosts_by_su(cluster: Cluster) -> dict[int, list[Host]]:
    """SU -> its GPU nodes in leaf-port order, SUs in order."""
    out: dict[int, list[Host]] = {}
    for host in cluster.hosts.values():
        if host.su is not None:
            out.setdefault(host.su, []).append(host)
    return {su: sorted(hosts, key=lambda h: (leaf_port(cluster, h), h.name)) for su, hosts in sorted(out.items())}


def spine_groups(cluster: Cluster) -> dict[str, list[tuple[int, int, str]]]:
    """Spine group -> its leaves as (SU, rail, leaf), in the order the group's uplinks are dealt."""
    groups: dict[str, list[tuple[int, int, str]]] = {}
    leaves = sorted({(h.su, p.rail, p.leaf, p.spine_group) for h in cluster.hosts.values() if h.su is not None
                     for p in h.rails})
    for su, rail, leaf, group in leaves:
        groups.setdefault(group, []).append((su, rail, leaf))
    return groups


def cables(cluster: Cluster) -> Iterator[Cable]:
    """Every cable: node ports by SU, node and rail, then leaf uplinks by spine group, SU and rail."""
    fab = cluster.fabric
    if fab is None:
        return
    for su, hosts in gpu_hosts_by_su(cluster).items():
        for host in hosts:
            port = leaf_port(cluster, host)
            for p in host.rails:
                yield Cable("node-leaf", su_name(su), p.rail, host.name, p.hca, p.leaf, port, "", None)
    spines = fab.spine_switches_per_group
    if not spines:
        return
    first, n = first_uplink(cluster), uplinks(cluster)
    groups = spine_groups(cluster)
    for group, leaves in groups.items():
        for i, (su, rail, leaf) in enumerate(leaves):
            for u in range(n):
                k = i * n + u
                yield Cable("leaf-spine", su_name(su), rail, "", "", leaf, first + u, spine_name(group, k % spines),
                            k // spines + 1)
    if fab.levels == 3 and fab.core_switches_per_group:
        yield from _core_cables(cluster, groups)


def _core_cables(cluster: Cluster, groups: dict[str, list[tuple[int, int, str]]]) -> Iterator[Cable]:
    """The spine up-ports of every plane dealt over the plane's core switches (three levels)."""
    fab = cluster.fabric
    assert fab is not None
    half, cores = fab.switch_radix // 2, fab.core_switches_per_group
    dealt: dict[str, int] = {}  # core group -> uplinks dealt so far
    for group, leaves in groups.items():  # spine groups in order: sg01's planes, then sg02's ...
        rail = leaves[0][1]  # the plane's rail (a plain fat-tree has one plane for all rails: rail 0's)
        core = core_group_name(fab.topology, rail)
        for s in range(fab.spine_switches_per_group):
            for u in range(half):
                k = dealt.get(core, 0)
                dealt[core] = k + 1
                yield Cable("spine-core", "", rail, "", "", spine_name(group, s), half + u + 1,
                            spine_name(core, k % cores), k // cores + 1)


def cabling_csv(cluster: Cluster) -> str:
    """The cabling plan as CSV (header :data:`COLUMNS`, ``\\n`` line ends)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(("" if v is None else v for v in astuple(c)) for c in cables(cluster))
    return buf.getvalue()
