"""The fabric model: scalable units (SUs), leaf switches per rail, spine groups.

Rail-optimized fat-tree (NVIDIA DGX SuperPOD style): the GPU nodes are cut into SUs of
``su_nodes`` consecutive nodes. In every SU, rail r of every node lands on that SU's leaf r
(one leaf per rail per SU); leaf r of every SU uplinks to spine group r. Half of a leaf's ports go
down to nodes and half up, so an SU holds at most radix/2 nodes non-blocking and a two-level tree
holds at most ``radix`` SUs per spine group. A plain fat-tree has one spine group for all rails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Every IPoIB interface is named ``<prefix><hca>`` (``ib-mlx5_0``): the infiniband role's udev rule
#: names them so on the hosts (the prefix reaches it through the inventory), Kubernetes objects and
#: LNet refer to them by that name. Linux allows 15 characters (IFNAMSIZ less the NUL).
IPOIB_NETDEV_PREFIX = "ib-"


def ipoib_netdev(hca: str) -> str:
    """The Linux name of the IPoIB interface of ``hca`` (a rail or the storage port)."""
    return f"{IPOIB_NETDEV_PREFIX}{hca}"


@dataclass(frozen=True, slots=True)
class RailPort:
    rail: int
    hca: str
    netdev: str  # the IPoIB interface of ``hca``: ipoib_netdev(hca)
    leaf: str
    spine_group: str
    ipoib_address: str | None
    ipoib_prefix: int | None


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
    spine_groups: int
    spine_switches_per_group: int

    @property
    def spine_switches(self) -> int:
        return self.spine_groups * self.spine_switches_per_group

    @property
    def node_injection_gbps(self) -> int:
        """Per-node bandwidth into the fabric over all rails, Gb/s one direction."""
        return self.rails * self.rate_gbps


def su_name(su: int) -> str:
    return f"su{su:02d}"


def leaf_name(su: int, rail: int) -> str:
    return f"{su_name(su)}-leaf-r{rail}"


def spine_group_name(topology: str, rail: int) -> str:
    return f"spine-r{rail}" if topology == "rail-optimized-fat-tree" else "spine"


def summarize(topology: str, rate: str, rate_gbps: int, rails: int, su_nodes: int, gpu_nodes: int,
              radix: int, su_count: int | None = None) -> FabricSummary:
    """The fabric's switch counts; ``su_count`` is the number of SUs in use (default: nodes packed into full SUs)."""
    if su_count is None:
        su_count = math.ceil(gpu_nodes / su_nodes) if gpu_nodes else 0
    groups = rails if topology == "rail-optimized-fat-tree" else 1
    leaves = su_count * rails
    uplinks_per_group = (leaves // groups) * (radix // 2)
    spines = math.ceil(uplinks_per_group / radix) if su_count > 1 else 0
    return FabricSummary(topology, rate, rate_gbps, rails, su_nodes, su_count, radix, leaves, groups, spines)
