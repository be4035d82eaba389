"""Inventory variables of the host roles, beside the inventory (``ansible/group_vars/all/``).

The inventory (:mod:`aiinfra.render.inventory`) carries hosts, groups, addresses and versions.
The host roles (common, nvidia_driver, infiniband, lustre_client, nvmeof, container_runtime,
dcgm) and playbooks/rolling.yml also need parts of the blueprint that are the same for every
host: the fabric's partition keys and subnet managers, the storage network, Lustre and NVMe-oF,
and the rollout batches. Ansible loads ``group_vars/`` next to an inventory file by itself, so
these files reach every play that uses the rendered inventory; the dynamic inventory carries them
in ``all`` (:func:`all_group_vars`). ``slurm.yml`` carries what the slurm
and container_runtime roles take from the Slurm render (:func:`aiinfra.render.slurm.role_inputs`):
paths the daemons use, the accounting objects, the restart record and the pyxis plugin.

Also the cluster's ``/etc/hosts`` block (``hosts/etc-hosts``): every host's management address,
rendered once here rather than templated on each of 16,384 hosts over every other host's
variables (which is quadratic in Ansible).

Ansible templates what it reads from group_vars: strings it could read as a template carry the
``!unsafe`` tag, as in the inventory (:func:`aiinfra.render.inventory.dump_yaml_unsafe`).
"""

from __future__ import annotations

import ipaddress

from ClusterShell.NodeSet import NodeSet

from aiinfra.catalog.defaults import DEFAULT_ROLLOUT
from aiinfra.catalog.links import LINK_RATES, link_rate
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.render import Artifacts, renderer
from aiinfra.render.inventory import dump_yaml_unsafe
from aiinfra.render.slurm import role_inputs
from aiinfra.spec.cluster import Cluster


def _header(cluster: Cluster, what: str) -> str:
    return f"# {what} of '{cluster.env}', rendered by aiinfra from {cluster.source}. Do not edit.\n"


def fabric_vars(cluster: Cluster) -> dict:
    """``aiinfra_fabric`` (what opensm and the HCA check need) and ``aiinfra_ibstat_rates`` (the
    catalog's ibstat "Rate:" of each link rate name, for the ``aiinfra_rail_rate`` group variable)."""
    rates = {"aiinfra_ibstat_rates": {name: r.ibstat_rate for name, r in LINK_RATES.items()}}
    fab = cluster.blueprint.fabric
    if fab is None:
        return {"aiinfra_fabric": None, **rates}
    rate = link_rate(fab.rate)
    return {
        **rates,
        "aiinfra_fabric": {
            "rate": rate.name,
            "ibstat_rate": rate.ibstat_rate,
            "pkeys": list(fab.pkeys),
            "subnet_managers": list(NodeSet(fab.subnet_managers)) if fab.subnet_managers else [],
            "sharp": fab.sharp,
        }
    }


def storage_vars(cluster: Cluster) -> dict:
    """``aiinfra_storage_network``, ``aiinfra_lustre`` and ``aiinfra_nvmeof`` (null when not declared), and
    ``aiinfra_gpfs`` for the gpfs_client role when the blueprint declares storage.gpfs. With
    ``parallel_fs: gpfs`` there is no ``aiinfra_lustre``: no host mounts Lustre."""
    bp = cluster.blueprint
    net = bp.networks.storage
    storage_network = None
    if net is not None:
        cidr = ipaddress.IPv4Network(net.cidr)
        storage_network = {"cidr": str(cidr), "prefix": cidr.prefixlen}
    lustre = bp.storage.lustre
    nvmeof = bp.storage.nvmeof
    gpfs = bp.storage.gpfs
    values: dict = {
        "aiinfra_storage_network": storage_network,
        "aiinfra_lustre": None if lustre is None else {
            "fsname": lustre.fsname,
            "mgs_nids": list(lustre.mgs_nids),
            "mountpoint": lustre.mountpoint,
            "mount_options": list(lustre.mount_options),
            "lnet": lustre.lnet,
        },
        "aiinfra_nvmeof": None if nvmeof is None else {
            "transport": nvmeof.transport,
            "targets": [{"nqn": t.nqn, "address": t.address, "port": t.port} for t in nvmeof.targets],
        },
    }
    if bp.storage.parallel_fs != "lustre":  # the lustre_client role runs nowhere: nothing of Lustre to say
        del values["aiinfra_lustre"]
    if gpfs is not None:
        values["aiinfra_gpfs"] = {
            "cluster_name": gpfs.cluster_name,
            "admin_node": gpfs.admin_node,
            "fsname": gpfs.fsname,
            "mountpoint": gpfs.mountpoint,
            "mount_options": list(gpfs.mount_options),
        }
    return values


def rollout_vars(cluster: Cluster) -> dict:
    """``aiinfra_rollout``: batches of playbooks/rolling.yml (Ansible ``serial`` is [first, size])."""
    r = cluster.blueprint.rollout
    values = dict(DEFAULT_ROLLOUT) if r is None else r.model_dump()
    values["serial"] = [values["first_batch"], values["batch_size"]]
    return {"aiinfra_rollout": values}


def etc_hosts(cluster: Cluster) -> str:
    """One ``address name`` line per host, in blueprint order."""
    lines = [f"{h.management_address} {h.name}" for h in cluster.hosts.values()]
    return "\n".join(lines) + "\n"


#: group_vars/all/<name>.yml: (what, values of the cluster)
GROUP_VARS_ALL = {"fabric": ("Fabric", fabric_vars), "storage": ("Storage", storage_vars),
                  "rollout": ("Rollout", rollout_vars), "slurm": ("Slurm", role_inputs)}


def all_group_vars(cluster: Cluster) -> dict:
    """Every variable of the group_vars/all files: what a dynamic inventory, which has no
    group_vars beside it, carries in ``all``."""
    out: dict = {}
    for _, values in GROUP_VARS_ALL.values():
        out.update(values(cluster))
    return out


@renderer("host_vars", "Variables of the host roles (group_vars/all) and the cluster's /etc/hosts block")
def render_host_vars(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    group_vars = "ansible/group_vars/all"
    return {
        **{f"{group_vars}/{name}.yml": _header(cluster, f"{what} variables") + dump_yaml_unsafe(values(cluster))
           for name, (what, values) in GROUP_VARS_ALL.items()},
        "hosts/etc-hosts": etc_hosts(cluster),
    }
