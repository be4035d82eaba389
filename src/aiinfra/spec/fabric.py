"""The fabric model: scalable units (SUs), leaf switches per rail, spine groups, and a core layer.

Rail-optimized fat-tree (NVIDIA DGX SuperPOD style): the GPU nodes are cut into SUs of
``su_nodes`` consecutive nodes. In every SU, rail r of every node lands on that SU's leaf r
(one leaf per rail per SU). Half of a leaf's ports go down to nodes and half up, so an SU holds at
most radix/2 nodes non-blocking. A plain fat-tree has one spine group for all rails where the
rail-optimized one has one per rail (a *plane*).

- Two levels (``fabric.levels: 2``): leaf r of every SU uplinks to spine group r; a spine's ports
  all go down, so a spine group connects at most ``radix`` SUs.
- Three levels (``fabric.levels: 3``): the SUs are cut into *spine groups* of
  ``sus_per_spine_group`` consecutive SUs (default radix/2). In spine group g, leaf r of each of its
  SUs uplinks to the spines of rail r of that group (``sg01-spine-r0``); those spines give half
  their ports to the leaves and half to the core switches of rail r (``core-r0``), which connect up
  to ``radix`` spine groups. At radix 64 and 32-node SUs: 32 SUs (1,024 nodes) per spine group,
  up to 64 spine groups (65,536 nodes) per plane. A spine group follows from the SU's number,
  ``(su - 1) // sus_per_spine_group + 1``, as the SU follows from the node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from aiinfra.spec.addressing import address

#: Every IPoIB interface is named ``<prefix><hca>`` (``ib-mlx5_0``): the infiniband role's udev rule
#: names them so on the hosts (the prefix reaches it through the inventory), Kubernetes objects and
#: LNet refer to them by that name. Linux allows 15 characters (IFNAMSIZ less the NUL).
IPOIB_NETDEV_PREFIX = "ib-"


def ipoib_netdev(hca: str) -> str:
    """The Linux name of the IPoIB interface of ``hca`` (a rail or the storage port)."""
    return f"{IPOIB_NETDEV_PREFIX}{hca}"


class RailPort(NamedTuple):
    """A GPU node's port on one rail. A named tuple: a render at 32,768 nodes builds a quarter of a million."""

    rail: int
    hca: str
    netdev: str  # the IPoIB interface of ``hca``: ipoib_netdev(hca)
    leaf: str
    spine_group: str  # the spine switches of this rail the leaf uplinks to
    ipoib_address: str | None
    ipoib_prefix: int | None
    core_group: str | None = None  # three levels: the core switches of this rail above the spine group


@dataclass(frozen=True, slots=True)
class RailPlan:
    """What the rail ports of every node of one node group are derived from: the fabric's shape, the
    node type's HCAs and the rail subnets. One per group; a host's ports are computed when asked for
    (:meth:`ports`), from its SU and index, so a 32,768-node cluster holds no 262,144 port objects."""

    topology: str
    levels: int
    sus_per_spine_group: int
    hcas: tuple[str, ...]
    subnet_bases: tuple[int, ...]  # rail r's network address as an integer; empty without networks.ipoib
    subnet_prefix: int | None

    def ports(self, su: int, index: int) -> tuple[RailPort, ...]:
        """The ports of the node with SU ``su`` and host index ``index``, by rail."""
        switches = _su_switches(self.topology, self.levels, self.sus_per_spine_group, self.hcas, su)
        addresses = self.addresses(index)
        prefix = self.subnet_prefix if addresses else None
        new = tuple.__new__  # what RailPort(...) ends in, without its keyword handling: a quarter million at 32k nodes
        return tuple([new(RailPort, (r, hca, netdev, leaf, spine, addresses[r] if addresses else None, prefix, core))
                      for r, (hca, netdev, leaf, spine, core) in enumerate(switches)])

    def addresses(self, index: int) -> list[str]:
        """The IPoIB address of host index ``index`` on every rail (empty without networks.ipoib)."""
        bases = self.subnet_bases
        if not bases:
            return []
        heads = _upper_halves(bases) if index < 65536 else None
        if heads is not None:  # every rail subnet starts on a /16 boundary: "10.64." + the index's two octets
            low = f"{index >> 8}.{index & 255}"
            return [head + low for head in heads]
        return [address(base, index) for base in bases]


@lru_cache(maxsize=64)
def _upper_halves(bases: tuple[int, ...]) -> tuple[str, ...] | None:
    """``("10.64.", "10.65.", ...)`` when every base address has its lower 16 bits zero, else None."""
    if any(base & 0xFFFF for base in bases):
        return None
    return tuple(f"{base >> 24}.{(base >> 16) & 255}." for base in bases)


@lru_cache(maxsize=4096)
def _su_switches(topology: str, levels: int, sus_per_spine_group: int, hcas: tuple[str, ...],
                 su: int) -> tuple[tuple[str, str, str, str, str | None], ...]:
    """(HCA, netdev, leaf, spine group, core group) by rail for the nodes of SU ``su``: the same for all of them."""
    group = spine_group_of(su, sus_per_spine_group) if levels == 3 else None
    return tuple((hca, ipoib_netdev(hca), leaf_name(su, r), spine_group_name(topology, r, group),
                  core_group_name(topology, r) if group is not None else None) for r, hca in enumerate(hcas))


@dataclass(frozen=True)
class FabricSummary:
    topology: str
    rate: str
    rate_gbps: int
    rails: int
    su_nodes: int
    su_count: int
    switch_radix: int
    leaf_switches: int
    spine_groups: int  # spine switch sets: one per plane (two levels), one per plane per spine group (three)
    spine_switches_per_group: int
    levels: int = 2
    sus_per_spine_group: int = 0  # three levels: SUs under one spine group
    core_groups: int = 0  # three levels: one core switch set per plane
    core_switches_per_group: int = 0

    @property
    def spine_switches(self) -> int:
        return self.spine_groups * self.spine_switches_per_group

    @property
    def core_switches(self) -> int:
        return self.core_groups * self.core_switches_per_group

    @property
    def planes(self) -> int:
        """Independent switch trees: one per rail (rail-optimized) or one for all rails."""
        return self.rails if self.topology == "rail-optimized-fat-tree" else 1

    @property
    def node_injection_gbps(self) -> int:
        """Per-node bandwidth into the fabric over all rails, Gb/s one direction."""
        return self.rails * self.rate_gbps


def su_name(su: int) -> str:
    return f"su{su:02d}"


def leaf_name(su: int, rail: int) -> str:
    return f"{su_name(su)}-leaf-r{rail}"


def spine_group_of(su: int, sus_per_spine_group: int) -> int:
    """The 1-based spine group of SU ``su`` in a three-level fabric: from the SU's number alone."""
    return (su - 1) // sus_per_spine_group + 1


def sg_name(group: int) -> str:
    """``sg01``: spine group ``group`` taken as a whole (all its rails), as topology.conf and the labels name it."""
    return f"sg{group:02d}"


def spine_group_name(topology: str, rail: int, group: int | None = None) -> str:
    """The spine switches rail ``rail``'s leaves uplink to: ``spine-r0`` (two levels) or ``sg01-spine-r0`` (three)."""
    plane = f"spine-r{rail}" if topology == "rail-optimized-fat-tree" else "spine"
    return plane if group is None else f"{sg_name(group)}-{plane}"


def core_group_name(topology: str, rail: int) -> str:
    """The core switches above the spine groups of rail ``rail`` (three levels): ``core-r0``, or ``core``."""
    return f"core-r{rail}" if topology == "rail-optimized-fat-tree" else "core"


def default_sus_per_spine_group(radix: int) -> int:
    """SUs under one spine group when the blueprint does not say: half a spine's ports go down, one per leaf."""
    return max(radix // 2, 1)


def summarize(topology: str, rate: str, rate_gbps: int, rails: int, su_nodes: int, gpu_nodes: int,
              radix: int, su_count: int | None = None, levels: int = 2, sus_per_spine_group: int | None = None,
              spine_groups_used: int | None = None) -> FabricSummary:
    """The fabric's switch counts; ``su_count`` is the number of SUs in use (default: nodes packed into full
    SUs), ``spine_groups_used`` the three-level spine groups holding them (default: SUs packed into full groups)."""
    if su_count is None:
        su_count = math.ceil(gpu_nodes / su_nodes) if gpu_nodes else 0
    planes = rails if topology == "rail-optimized-fat-tree" else 1
    leaves = su_count * rails
    if levels != 3:
        uplinks_per_group = (leaves // planes) * (radix // 2)
        spines = math.ceil(uplinks_per_group / radix) if su_count > 1 else 0
        return FabricSummary(topology, rate, rate_gbps, rails, su_nodes, su_count, radix, leaves, planes, spines)
    per = sus_per_spine_group or default_sus_per_spine_group(radix)
    if spine_groups_used is None:
        spine_groups_used = math.ceil(su_count / per)
    # one spine set of a full group: its leaves' uplinks on the spines' down-ports (half of each spine)
    leaves_per_set = min(per, su_count) * rails // planes
    spines = math.ceil(leaves_per_set * (radix // 2) / max(radix // 2, 1))
    core_per_plane = math.ceil(spine_groups_used * spines * (radix // 2) / radix) if spine_groups_used > 1 else 0
    return FabricSummary(topology, rate, rate_gbps, rails, su_nodes, su_count, radix, leaves,
                         spine_groups_used * planes, spines, 3, per, planes if core_per_plane else 0, core_per_plane)
