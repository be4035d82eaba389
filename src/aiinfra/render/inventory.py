"""The Ansible inventory, from the blueprint only (never from gathered facts).

One model serves two outputs: ``manifests/<env>/ansible/inventory.yml`` (static YAML inventory)
and ``aiinfra inventory --list/--host`` (Ansible's dynamic-inventory JSON protocol).

Groups: one per node group (``gpu_train``), one per service role (``slurm_controller``), one per
scheduler (``slurm_compute``, ``k8s_worker``), ``gpu_nodes``, and one per scalable unit
(``su01``...). Host variables carry addresses and rails; node-type facts are group variables.
IPoIB interface names follow :func:`aiinfra.spec.fabric.ipoib_netdev`: ``aiinfra_ipoib_prefix`` (all)
is the prefix the infiniband role names them with, ``aiinfra_storage_netdev`` (group) the storage
port's interface that lustre_client runs LNet on.

Ansible templates strings it reads from an inventory or a group_vars file, on the controller: a
blueprint field holding ``{{ lookup('pipe', ...) }}`` would run a command there. Every string Ansible
could read as a template (:func:`could_template`) is therefore marked unsafe: the ``!unsafe`` YAML
tag in the rendered files (:func:`dump_yaml_unsafe`, :func:`flow_unsafe`), ``{"__ansible_unsafe": ...}``
in the dynamic-inventory JSON (:func:`dynamic_list`, :func:`dynamic_host`). Ansible then passes the
string on as it is. Other strings are written plainly, so the files stay readable by any YAML reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from aiinfra.plan.cluster import ClusterPlan
from aiinfra.render import Artifacts, renderer
from aiinfra.render.templates import StableDumper
from aiinfra.spec.cluster import Cluster, Group, Host, ansible_name, su_name
from aiinfra.spec.fabric import IPOIB_NETDEV_PREFIX
from aiinfra.spec.models import NodeState

SCHEDULER_GROUPS = {"slurm": "slurm_compute", "kubernetes": "k8s_worker"}
DERIVED_GROUPS = {"gpu_nodes", *SCHEDULER_GROUPS.values()}


@dataclass
class InventoryModel:
    groups: dict[str, list[str]]  # group -> hosts (sorted as in the blueprint)
    group_vars: dict[str, dict]
    hostvars: dict[str, dict]
    all_vars: dict


OUT_OF_SERVICE_GROUP_PREFIX = "node_"  # Ansible groups node_drain and node_down (the blueprint's nodes:)
IN_INVENTORY_STATES = ("drain", "down")  # decommissioned nodes are not in the inventory at all


def host_vars(host: Host, state: NodeState | None = None) -> dict:
    hv: dict = {
        "ansible_host": host.management_address,
        "aiinfra_node_group": host.group,
        "aiinfra_bmc_address": host.bmc_address,
    }
    if state is not None:
        hv["aiinfra_node_state"] = state.state
        hv["aiinfra_node_reason"] = state.reason
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
    states = {h: st for g in cluster.groups.values() for h, st in g.states.items()}
    for st_name in IN_INVENTORY_STATES:  # always there (maybe empty): a node going out changes only its line
        groups.setdefault(f"{OUT_OF_SERVICE_GROUP_PREFIX}{st_name}", [])
    for name, st in states.items():  # node_drain, node_down: `hosts up` leaves node_down out unless --limit names it
        groups.setdefault(f"{OUT_OF_SERVICE_GROUP_PREFIX}{st.state}", []).append(name)
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
        hostvars={name: host_vars(h, states.get(name)) for name, h in cluster.hosts.items()},
        all_vars=all_vars,
    )


# ------------------------------------------------------------------ strings Ansible must not template


_TEMPLATE_MARKS = ("{{", "{%", "{#", "#")


def could_template(text: str) -> bool:
    """Whether Ansible could read ``text`` as a template. ansible-core 2.19 templates a string that
    holds a Jinja start string (``{{``, ``{%``, ``{#``) or begins with a ``#jinja2:`` header that
    changes the delimiters (``is_possibly_template`` in ansible/_internal/_templating/_jinja_bits.py);
    this looks for those start strings and for a ``#`` anywhere."""
    return any(mark in text for mark in _TEMPLATE_MARKS)


class _Unsafe(str):
    """A string written with YAML's ``!unsafe`` tag."""


class _UnsafeDumper(StableDumper):
    pass


_UnsafeDumper.add_representer(_Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value)))


def _mark(value: object, wrap) -> object:
    """``value`` with every string that :func:`could_template` replaced by ``wrap(string)``
    (mapping keys are names, never templated, and stay as they are)."""
    if isinstance(value, str):
        return wrap(value) if could_template(value) else value
    if isinstance(value, dict):
        return {k: _mark(v, wrap) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark(v, wrap) for v in value]
    return value


def dump_yaml_unsafe(value: object) -> str:
    """Block-style YAML as :func:`aiinfra.render.templates.dump_yaml` writes it, with ``!unsafe``
    before every string Ansible could template."""
    marked = _mark(value, _Unsafe)
    text = yaml.dump(marked, Dumper=_UnsafeDumper, sort_keys=True, default_flow_style=False, width=120)
    return text.rstrip("\n") + "\n"


def flow_unsafe(value: object) -> str:
    """One-line JSON flow mapping (keys sorted) that YAML reads as is, with ``!unsafe`` before every
    string Ansible could template."""
    text = json.dumps(value, sort_keys=True, separators=(", ", ": "))
    # JSON never writes "{{", "{%", "{#" or "#" itself, nor escapes them in a string: without them
    # no string needs the tag (and the plain dump is 5x faster for 16,384 hosts).
    if not any(mark in text for mark in _TEMPLATE_MARKS):
        return text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {flow_unsafe(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow_unsafe(v) for v in value) + "]"
    if isinstance(value, str) and could_template(value):
        return "!unsafe " + json.dumps(value)
    return json.dumps(value)


def _json_unsafe(text: str) -> dict:
    # How an inventory script marks a value unsafe: the script plugin decodes its output with the
    # inventory_legacy JSON profile, which reads {"__ansible_unsafe": str} in `vars` and
    # `_meta.hostvars` as an untrusted string (ansible/_internal/_json/_profiles/_legacy.py).
    return {"__ansible_unsafe": text}


def dynamic_list(model: InventoryModel) -> dict:
    """``--list`` output of Ansible's dynamic-inventory protocol (strings Ansible could template
    marked unsafe)."""
    hostvars = {name: _mark(hv, _json_unsafe) for name, hv in model.hostvars.items()}
    out: dict = {"_meta": {"hostvars": hostvars},
                 "all": {"children": sorted(model.groups), "vars": _mark(model.all_vars, _json_unsafe)}}
    for name, hosts in model.groups.items():
        out[name] = {"hosts": hosts}
        if name in model.group_vars:
            out[name]["vars"] = _mark(model.group_vars[name], _json_unsafe)
    return out


def dynamic_host(model: InventoryModel, name: str) -> dict:
    """``--host NAME`` output of the protocol (strings Ansible could template marked unsafe)."""
    return _mark(model.hostvars[name], _json_unsafe)  # type: ignore[return-value]


@renderer("inventory", "Ansible inventory: groups per node group, role, scheduler and SU")
def render_inventory(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    """A YAML inventory with one line per host (its variables as a JSON flow mapping, which YAML
    reads as is): fast to write for 16,384 hosts and a one-line diff when a host changes. Strings
    Ansible could template carry ``!unsafe``."""
    model = inventory_model(cluster)
    lines = [
        f"# Ansible inventory of '{cluster.env}', rendered by aiinfra from {cluster.source}. Do not edit.",
        "all:",
        "  vars:",
        _indent(dump_yaml_unsafe(model.all_vars), 4),
        "  hosts:",
    ]
    lines += [f"    {name}: {flow_unsafe(hv)}" for name, hv in sorted(model.hostvars.items())]
    lines.append("  children:")
    for name, hosts in model.groups.items():
        lines.append(f"    {name}:")
        if name in model.group_vars:
            lines.append(f"      vars: {flow_unsafe(model.group_vars[name])}")
        lines.append("      hosts:")
        lines += [f"        {h}:" for h in hosts]
    return {"ansible/inventory.yml": "\n".join(lines) + "\n"}


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.rstrip("\n").splitlines())


def reserved_group_clash(names: list[str]) -> list[str]:
    """Node group names whose Ansible group would clash with a derived one."""
    from aiinfra.spec.models import NodeRole

    reserved = DERIVED_GROUPS | set(NodeRole.__args__)  # type: ignore[attr-defined]
    return [n for n in names if ansible_name(n) in reserved or ansible_name(n).startswith("su")]
