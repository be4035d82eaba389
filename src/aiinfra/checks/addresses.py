"""Addresses typed into the blueprint (``cluster`` phase, so the planned host addresses are known).

- ``kubernetes.api_vip`` is an IPv4 address or a DNS name; as an address it is nobody's planned
  address (the VIP would be claimed by a host) and not a network or broadcast address.
- Lustre MGS NIDs are ``<IPv4>@<lnet>`` of the clients' LNet network type (``o2ib`` with
  ``lnet: o2ib0``); over o2ib the MGS sits on the storage network.
- NVMe-oF targets are IPv4 addresses; over RDMA they sit on the storage network.
Every such value reaches kubeadm, the mount units or ``nvme connect`` verbatim, so a typo here is
a node that never joins; it is refused before anything is rendered.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from aiinfra.checks.registry import error, validator
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.spec.cluster import Cluster

_DNS_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*",
                       re.IGNORECASE)
_NID = re.compile(r"(?P<ip>[^@\s]+)@(?P<net>(o2ib|tcp)(?P<num>\d*))")


def _ipv4(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _looks_numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[\d.]+", text))


def _planned(cluster: Cluster, wanted: set[str]) -> dict[str, str]:
    """The planned host addresses among ``wanted`` -> 'host (network)' (the first host, in blueprint
    order, that has it). One pass that looks only for these: a map of every address would be a
    hundred thousand entries at 32,768 nodes for the few addresses the blueprint names."""
    owners: dict[str, str] = {}
    if not wanted:
        return owners
    for h in cluster.hosts.values():
        for net, addr in (("management", h.management_address), ("bmc", h.bmc_address),
                          ("storage", h.storage_address)):
            if addr in wanted:
                owners.setdefault(addr, f"{h.name} ({net})")
    return owners


@validator("cluster")
def api_vip(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    k8s = cluster.blueprint.kubernetes
    if k8s is None or not k8s.api_vip:
        return
    vip, path = k8s.api_vip.strip(), ("kubernetes", "api_vip")
    address = _ipv4(vip)
    if address is None:
        if _looks_numeric(vip) or not _DNS_NAME.fullmatch(vip):
            yield error(path, "bad-address", f"'{vip}' is neither an IPv4 address nor a DNS name",
                        "give the VIP as four octets 0-255 (e.g. 10.0.0.10) or a DNS name")
        return
    owner = _planned(cluster, {str(address)}).get(str(address))
    if owner:
        yield error(path, "address-taken", f"{vip} is the planned address of {owner}",
                    "pick a free address for the VIP (below the first host index, or outside the host blocks)")
    mgmt = ipaddress.IPv4Network(cluster.blueprint.networks.management.cidr)
    if address in mgmt and address in (mgmt.network_address, mgmt.broadcast_address):
        yield error(path, "bad-address", f"{vip} is the network or broadcast address of {mgmt}",
                    "pick a host address of the management network")


@validator("cluster")
def storage_addresses(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    bp = cluster.blueprint
    storage_net = ipaddress.IPv4Network(bp.networks.storage.cidr) if bp.networks.storage else None
    lustre = bp.storage.lustre
    nvmeof = bp.storage.nvmeof
    named = [m["ip"] for nid in (lustre.mgs_nids if lustre else []) if (m := _NID.fullmatch(nid.strip()))]
    named += [str(a) for t in (nvmeof.targets if nvmeof else []) if (a := _ipv4(t.address.strip()))]
    taken = _planned(cluster, set(named))
    if lustre is not None:
        lnet_type = re.sub(r"\d+$", "", lustre.lnet)
        for i, nid in enumerate(lustre.mgs_nids):
            path = ("storage", "lustre", "mgs_nids", i)
            m = _NID.fullmatch(nid.strip())
            if not m or _ipv4(m["ip"]) is None:
                yield error(path, "bad-nid", f"'{nid}' is not a Lustre NID (<IPv4 address>@<LNet network>)",
                            f"write it as <MGS address>@{lnet_type}, e.g. 10.2.255.1@{lnet_type}")
                continue
            if re.sub(r"\d+$", "", m["net"]) != lnet_type:
                yield error(path, "bad-nid", f"NID {nid} is on LNet '{m['net']}', the clients on '{lustre.lnet}'",
                            f"use @{lnet_type} (or change storage.lustre.lnet)")
            elif lnet_type == "o2ib" and storage_net is not None and _ipv4(m["ip"]) not in storage_net:
                yield error(path, "address-outside-network", f"MGS {m['ip']} is outside the storage network "
                            f"{storage_net} the clients reach it over", "use the MGS's address on the storage network")
            elif m["ip"] in taken:
                yield error(path, "address-taken", f"MGS {m['ip']} is the planned address of {taken[m['ip']]}",
                            "give the MGS's own address")
    if nvmeof is not None:
        for i, target in enumerate(nvmeof.targets):
            path = ("storage", "nvmeof", "targets", i, "address")
            address = _ipv4(target.address.strip())
            if address is None:
                yield error(path, "bad-address", f"'{target.address}' is not an IPv4 address",
                            "give the target's address as four octets 0-255")
            elif nvmeof.transport == "rdma" and storage_net is not None and address not in storage_net:
                yield error(path, "address-outside-network", f"NVMe-oF target {address} is outside the storage "
                            f"network {storage_net} (RDMA reaches it only there)",
                            "use the target's address on the storage network")
            elif str(address) in taken:
                yield error(path, "address-taken", f"NVMe-oF target {address} is the planned address of "
                            f"{taken[str(address)]}", "give the target's own address")
