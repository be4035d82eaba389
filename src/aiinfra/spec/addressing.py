"""The address plan: deterministic IPv4 addresses per network from CIDRs and host indices.

A host's *index* is its offset inside every flat network (management, BMC, storage) and inside each
rail subnet of the IPoIB network, so ``gpu017`` ends in the same host part everywhere.

The index comes from the host's own name, never from its place in a list: a name is a *prefix*
and a *number* (``gpu017`` -> ``gpu``, 17), and ``index = base(prefix) + number - 1``. Adding,
removing or replacing a node, or moving it between node groups of the same prefix, changes no
other node's index. ``base`` is the ``address_index`` of a group with that prefix when one is set
(the index of the prefix's host number 1, e.g. ``gpu001``); otherwise prefixes are laid out in
blueprint order from ``networks.management.first_host``, each reserving a block of 10^width
numbers (``mgmt01``: 100, ``gpu001``: 1,000), so a prefix can grow within its width without
moving another. A name without a trailing number takes a block of one.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from aiinfra.spec.models import NodeGroup

_DIGITS = "0123456789"


class HostName(NamedTuple):
    prefix: str
    number: int | None  # None: no trailing number
    width: int  # digits as written (zero padding included)


@lru_cache(maxsize=1 << 17)
def split_name(host: str) -> HostName:
    """``gpu017`` -> (``gpu``, 17, 3); ``head`` -> (``head``, None, 0). (Asked for every host several
    times per build, by the checks and the Cluster: remembered, not parsed again.)"""
    prefix = host.rstrip(_DIGITS)
    if len(prefix) == len(host):
        return HostName(host, None, 0)
    return HostName(prefix, int(host[len(prefix):]), len(host) - len(prefix))


@dataclass(frozen=True)
class PrefixBlock:
    """Host indices [base, base + span) reserved for the names of one prefix."""

    prefix: str
    base: int  # index of the prefix's number 1
    span: int
    explicit: bool  # from a group's address_index

    def index(self, name: HostName) -> int:
        return self.base + (name.number - 1 if name.number is not None else 0)


def plan_prefixes(groups: list[NodeGroup], expanded: dict[str, tuple[str, ...]],
                  first_host: int) -> dict[str, PrefixBlock]:
    """The block of every host-name prefix (see the module docstring)."""
    width: dict[str, int] = {}
    explicit: dict[str, int] = {}
    order: list[str] = []
    for group in groups:
        for host in expanded.get(group.name, ()):
            name = split_name(host)
            if name.prefix not in width:
                order.append(name.prefix)
            width[name.prefix] = max(width.get(name.prefix, 0), name.width)
            if group.address_index is not None:
                explicit.setdefault(name.prefix, group.address_index)
    blocks: dict[str, PrefixBlock] = {
        p: PrefixBlock(p, explicit[p], 10 ** width[p] if width[p] else 1, True) for p in order if p in explicit
    }
    taken = sorted((b.base, b.base + b.span) for b in blocks.values())
    cursor = first_host
    for prefix in order:
        if prefix in blocks:
            continue
        span = 10 ** width[prefix] if width[prefix] else 1
        moved = True
        while moved:  # the first gap of the default layout that no explicit block covers
            moved = False
            for low, high in taken:
                if cursor < high and low < cursor + span:
                    cursor, moved = high, True
        blocks[prefix] = PrefixBlock(prefix, cursor, span, False)
        taken.append((cursor, cursor + span))
        cursor += span
    return blocks


@dataclass(frozen=True)
class AddressPlan:
    """Every prefix's block and every host's index: computed once per build, from the blueprint's
    expanded hostlists, and handed to the checks and to the Cluster."""

    blocks: dict[str, PrefixBlock]
    indices: dict[str, int]  # host -> index, hosts in blueprint order (decommissioned ones included)


def address_plan(groups: list[NodeGroup], expanded: dict[str, tuple[str, ...]], first_host: int) -> AddressPlan:
    blocks = plan_prefixes(groups, expanded, first_host)
    out: dict[str, int] = {}
    for group in groups:
        for host in expanded.get(group.name, ()):
            name = split_name(host)
            out[host] = blocks[name.prefix].index(name)
    return AddressPlan(blocks, out)


def colliding(indices: dict[str, int]) -> list[tuple[str, str, int]]:
    """Pairs of hosts that got the same index (first holder, second holder, index)."""
    holder: dict[int, str] = {}
    found = []
    for host, index in indices.items():
        if index in holder:
            found.append((holder[index], host, index))
        else:
            holder[index] = host
    return found


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
