"""The address plan: deterministic IPv4 addresses per network from CIDRs and host indices.

A host's *index* is its offset inside every flat network (management, BMC, storage) and inside each
rail subnet of the IPoIB network, so ``gpu017`` ends in the same host part everywhere — easy to
read in an incident. Groups are laid out in blueprint order; a group that sets ``address_index``
starts there, so growing an earlier group never renumbers a later one.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from aiinfra.spec.models import NodeGroup


@dataclass(frozen=True)
class GroupBlock:
    """Host indices [first, first + size) taken by one node group."""

    group: str
    first: int
    size: int

    @property
    def last(self) -> int:
        return self.first + self.size - 1


def plan_blocks(groups: list[NodeGroup], sizes: dict[str, int], first_host: int) -> list[GroupBlock]:
    """Lay out each group's block of host indices, in blueprint order."""
    blocks: list[GroupBlock] = []
    cursor = first_host
    for group in groups:
        start = group.address_index if group.address_index is not None else cursor
        blocks.append(GroupBlock(group.name, start, sizes[group.name]))
        cursor = max(cursor, start + sizes[group.name])
    return blocks


def overlapping_blocks(blocks: list[GroupBlock]) -> list[tuple[GroupBlock, GroupBlock]]:
    ordered = sorted(blocks, key=lambda b: b.first)
    return [(a, b) for a, b in zip(ordered, ordered[1:], strict=False) if b.first <= a.last]


def host_capacity(cidr: str) -> int:
    """Highest usable host index (network and broadcast excluded)."""
    return ipaddress.IPv4Network(cidr).num_addresses - 2


def address(cidr_base: int, index: int) -> str:
    """The dotted address ``index`` hosts after the network address ``cidr_base`` (an int)."""
    return socket.inet_ntoa(struct.pack("!I", cidr_base + index))


def network_base(cidr: str) -> int:
    return int(ipaddress.IPv4Network(cidr).network_address)


def rail_subnets(cidr: str, rail_prefix: int, rails: int) -> list[ipaddress.IPv4Network]:
    """The first ``rails`` subnets of ``cidr`` with prefix ``rail_prefix`` (rail r -> r-th subnet)."""
    net = ipaddress.IPv4Network(cidr)
    if rail_prefix < net.prefixlen:
        return []
    subnets: list[ipaddress.IPv4Network] = []
    for sub in net.subnets(new_prefix=rail_prefix):
        if len(subnets) == rails:
            break
        subnets.append(sub)
    return subnets
