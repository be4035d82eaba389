"""The Ansible inventory, from the blueprint only (never from gathered facts).

One model serves two outputs: ``manifests/<env>/ansible/inventory.json`` (static inventory, which
Ansible's yaml plugin reads with its JSON parser) and ``aiinfra inventory --list/--host`` (Ansible's
dynamic-inventory JSON protocol). Both give every host the same variables: the dynamic one carries
in ``all`` the variables the static one has beside it in ``group_vars/all``.

Groups: one per node group (``gpu_train``, holding its hosts), one per scalable unit (``su01``...,
holding hosts), ``node_drain``/``node_down``, and groups whose children are node groups: one per
service role (``slurm_controller``), one per scheduler (``slurm_compute``, ``k8s_worker``) and
``gpu_nodes``. Host variables carry only what differs per host (addresses, SU, state); node-type
facts and the rails' HCAs are node-group variables. IPoIB interface names follow
:func:`aiinfra.spec.fabric.ipoib_netdev`: ``aiinfra_ipoib_prefix`` (all) is the prefix the
infiniband role names them with, ``aiinfra_storage_netdev`` (group) the storage port's interface
that lustre_client runs LNet on.

Ansible templates strings it reads from an inventory or a group_vars file, on the controller: a
blueprint field holding ``{{ lookup('pipe', ...) }}`` would run a command there. Every string Ansible
could read as a template (:func:`could_template`) is therefore marked unsafe: ``{"__ansible_unsafe":
...}`` in JSON (:func:`json_unsafe`, :func:`dynamic_list`, :func:`dynamic_host`), the ``!unsafe``
YAML tag in the group_vars files (:func:`dump_yaml_unsafe`). Ansible then passes the string on as
it is. Other strings are written plainly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import yaml

from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.software import job_software
from aiinfra.render import Artifacts, renderer
from aiinfra.render.templates import StableDumper
from aiinfra.spec.cluster import Cluster, Group, Host, ansible_name, su_name
from aiinfra.spec.fabric import IPOIB_NETDEV_PREFIX
from aiinfra.spec.models import NodeState

SCHEDULER_GROUPS = {"slurm": "slurm_compute", "kubernetes": "k8s_worker"}
DERIVED_GROUPS = {"gpu_nodes", *SCHEDULER_GROUPS.values()}


@dataclass
class InventoryModel:
    groups: dict[str, list[str]]  # group -> every host in it, its child groups' included (as Ansible sees it)
    hosts: dict[str, list[str]]  # group -> the hosts listed in it (node groups, SUs, node states)
    children: dict[str, list[str]]  # group -> its child groups (node groups, in blueprint order)
    group_vars: dict[str, dict]
    hostvars: dict[str, dict]
    all_vars: dict
    node_groups: tuple[str, ...] = ()  # the groups that list hosts with their variables


OUT_OF_SERVICE_GROUP_PREFIX = "node_"  # Ansible groups node_drain and node_down (the blueprint's nodes:)
IN_INVENTORY_STATES = ("drain", "down")  # decommissioned nodes are not in the inventory at all
#: ``aiinfra_leaf_format % (aiinfra_su, rail)``: the leaf of a rail port (:func:`aiinfra.spec.fabric.leaf_name`),
#: so that the inventory carries a GPU node's SU once rather than a leaf per rail.
LEAF_FORMAT = "su%02d-leaf-r%d"


def host_vars(host: Host, state: NodeState | None = None) -> dict:
    """What differs from host to host: addresses, the SU, the node's state. The rest is its node
    group's (:func:`group_vars`)."""
    hv: dict = {
        "ansible_host": host.management_address,
        "aiinfra_bmc_address": host.bmc_address,
    }
    if state is not None:
        hv["aiinfra_node_state"] = state.state
        hv["aiinfra_node_reason"] = state.reason
    if host.storage_address:
        hv["aiinfra_storage_address"] = host.storage_address
    if host.su is not None:
        hv["aiinfra_su"] = host.su
    addresses = host.rail_addresses  # without building the rail ports
    if addresses:
        hv["aiinfra_rail_addresses"] = addresses
    return hv


def group_vars(cluster: Cluster, group: Group) -> dict:
    """What is the same for every host of a node group. The rails (rail ``i``: HCA
    ``aiinfra_rail_hcas[i]``, address ``aiinfra_rail_addresses[i]`` of the host, prefix
    ``aiinfra_rail_prefix``, leaf ``aiinfra_leaf_format % (aiinfra_su, i)``) are the same for every
    host of the group but the address."""
    nt = group.node_type
    gv: dict = {
        "aiinfra_node_group": group.name,
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
        ports = next((cluster.hosts[h].rails for h in group.hosts if cluster.hosts[h].rails), ())
        if ports:
            gv["aiinfra_rail_hcas"] = [p.hca for p in ports]
            gv["aiinfra_rail_prefix"] = ports[0].ipoib_prefix
    if nt.storage_hca:
        gv["aiinfra_storage_hca"] = nt.storage_hca
        gv["aiinfra_storage_netdev"] = group.storage_netdev
    return gv


def k8s_node_vars(cluster: Cluster) -> tuple[dict[str, dict], dict[str, dict], dict[str, dict]]:
    """The labels and taints each kubelet registers with (:func:`aiinfra.render.k8s_hosts.nodes_data`),
    split by where they are the same: a node group's (``aiinfra_k8s_group_labels``,
    ``aiinfra_k8s_taints``), an SU's (``aiinfra_k8s_su_labels``: SU, leaves, spine group) and the
    host's own (``aiinfra_k8s_labels``, ``aiinfra_k8s_host_taints``: NVLink domain, node state).
    The kubernetes role merges them in that order: no host reads a cluster-wide file for its own."""
    from aiinfra.catalog.k8s_resources import SU_LABEL
    from aiinfra.render.k8s_hosts import nodes_data
    from aiinfra.render.k8s_topology import SPINE_GROUP_LABEL, leaf_label
    from aiinfra.render.kubernetes import uses_kubernetes

    if not uses_kubernetes(cluster) or cluster.blueprint.kubernetes is None:
        return {}, {}, {}
    nodes = nodes_data(cluster)

    def common(labels: list[dict]) -> dict:
        return {k: v for k, v in labels[0].items() if all(other.get(k) == v for other in labels[1:])}

    def per_su(key: str) -> bool:  # a label of the fabric position: the same for every node of an SU
        return key in (SU_LABEL, SPINE_GROUP_LABEL) or key.startswith(leaf_label(0)[:-1])

    group_of: dict[str, list[str]] = {}
    su_of: dict[str, list[str]] = {}
    for name in nodes:
        host = cluster.hosts[name]
        group_of.setdefault(cluster.groups[host.group].ansible_group, []).append(name)
        if host.su is not None:
            su_of.setdefault(su_name(host.su), []).append(name)
    by_group = {}
    for group, names in group_of.items():
        taints = [t for t in nodes[names[0]]["taints"] if all(t in nodes[n]["taints"] for n in names)]
        labels = common([{k: v for k, v in nodes[n]["labels"].items() if not per_su(k)} for n in names])
        by_group[group] = {"aiinfra_k8s_group_labels": labels, "aiinfra_k8s_taints": taints}
    by_su = {su: {"aiinfra_k8s_su_labels": common([{k: v for k, v in nodes[n]["labels"].items() if per_su(k)}
                                                    for n in names])}
             for su, names in su_of.items()}
    by_host = {}
    for name, node in nodes.items():
        host = cluster.hosts[name]
        group_labels = by_group[cluster.groups[host.group].ansible_group]["aiinfra_k8s_group_labels"]
        shared = {**group_labels, **(by_su[su_name(host.su)]["aiinfra_k8s_su_labels"] if host.su is not None else {})}
        own: dict = {}
        labels = {k: v for k, v in node["labels"].items() if shared.get(k) != v}
        if labels:
            own["aiinfra_k8s_labels"] = labels
        taints = [t for t in node["taints"]
                  if t not in by_group[cluster.groups[host.group].ansible_group]["aiinfra_k8s_taints"]]
        if taints:
            own["aiinfra_k8s_host_taints"] = taints
        if own:
            by_host[name] = own
    return by_group, by_su, by_host


def inventory_model(cluster: Cluster) -> InventoryModel:
    """Hosts are listed in their node group (with their variables) and their SU; every other group
    takes node groups as children."""
    listed: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    gvars: dict[str, dict] = {}
    for group in cluster.groups.values():
        listed[group.ansible_group] = list(group.hosts)
        gvars[group.ansible_group] = group_vars(cluster, group)
        parents = list(group.roles)
        if group.scheduler in SCHEDULER_GROUPS:
            parents.append(SCHEDULER_GROUPS[group.scheduler])
        if group.gpus_per_node:
            parents.append("gpu_nodes")
        for parent in parents:
            children.setdefault(parent, []).append(group.ansible_group)
    for host in cluster.hosts.values():
        if host.su is not None:
            listed.setdefault(su_name(host.su), []).append(host.name)
    for st_name in IN_INVENTORY_STATES:  # always there (maybe empty): a node going out changes only its line
        listed.setdefault(f"{OUT_OF_SERVICE_GROUP_PREFIX}{st_name}", [])
    states = {h: st for g in cluster.groups.values() for h, st in g.states.items()}
    for name, st in states.items():  # node_drain, node_down: `hosts up` leaves node_down out unless --limit names it
        listed.setdefault(f"{OUT_OF_SERVICE_GROUP_PREFIX}{st.state}", []).append(name)
    k8s_groups, k8s_sus, k8s_hosts = k8s_node_vars(cluster)
    for name, values in [*k8s_groups.items(), *k8s_sus.items()]:
        gvars.setdefault(name, {}).update(values)
    members: dict[str, list[str]] = {}
    for name in sorted({*listed, *children}):
        hosts = dict.fromkeys(listed.get(name, []))
        for child in children.get(name, []):
            hosts.update(dict.fromkeys(listed[child]))
        members[name] = list(hosts)
    bp = cluster.blueprint
    all_vars = {
        "aiinfra_env": cluster.env,
        "aiinfra_cluster_name": bp.name,
        "aiinfra_versions": bp.versions.model_dump(exclude_none=True),
        "aiinfra_job_software": job_software(cluster).inventory(),  # nccl_tests, megatron_lm roles (plan/software.py)
        "aiinfra_manifests": f"manifests/{cluster.env}",
        "aiinfra_ipoib_prefix": IPOIB_NETDEV_PREFIX,
        "aiinfra_leaf_format": LEAF_FORMAT,
    }
    return InventoryModel(
        groups=members,
        hosts={name: listed[name] for name in sorted(listed)},
        children={name: children[name] for name in sorted(children)},
        group_vars=gvars,
        hostvars={name: {**host_vars(h, states.get(name)), **k8s_hosts.get(name, {})} for name, h in cluster.hosts.items()},
        all_vars=all_vars,
        node_groups=tuple(g.ansible_group for g in cluster.groups.values()),
    )


# ------------------------------------------------------------------ strings Ansible must not template


_TEMPLATE_MARKS = ("{{", "{%", "{#", "#")
_TEMPLATE_MARK = re.compile("|".join(re.escape(m) for m in _TEMPLATE_MARKS)).search  # one scan instead of four


def could_template(text: str) -> bool:
    """Whether Ansible could read ``text`` as a template. ansible-core 2.19 templates a string that
    holds a Jinja start string (``{{``, ``{%``, ``{#``) or begins with a ``#jinja2:`` header that
    changes the delimiters (``is_possibly_template`` in ansible/_internal/_templating/_jinja_bits.py);
    this looks for those start strings and for a ``#`` anywhere."""
    return _TEMPLATE_MARK(text) is not None


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


#: one encoder for every line (``json.dumps`` with options builds a new one per call: 130,000 calls at 32,768 nodes)
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(", ", ": ")).encode


def json_unsafe(value: object) -> str:
    """``value`` as compact one-line JSON (keys sorted), every string Ansible could template as
    ``{"__ansible_unsafe": string}`` (:func:`_json_unsafe`)."""
    text = _ENCODE(value)
    # JSON never writes "{{", "{%", "{#" or "#" itself, nor escapes them in a string: without them
    # no string needs marking (and the plain dump is 5x faster for 16,384 hosts).
    if _TEMPLATE_MARK(text) is None:
        return text
    return _ENCODE(_mark(value, _json_unsafe))


def _json_unsafe(text: str) -> dict:
    # How JSON marks a value unsafe for Ansible. ansible-core 2.19 reads a JSON inventory file (the
    # yaml plugin's loader tries JSON first) and an inventory script's output with its legacy JSON
    # profiles, which read {"__ansible_unsafe": str} as an untrusted string
    # (ansible/_internal/_json/_profiles/_legacy.py and _inventory_legacy.py); older releases'
    # AnsibleJSONDecoder read it as AnsibleUnsafeText.
    return {"__ansible_unsafe": text}


def dynamic_list(model: InventoryModel, extra_all_vars: dict | None = None) -> dict:
    """``--list`` output of Ansible's dynamic-inventory protocol: the groups, hosts and variables
    of the static inventory, plus ``extra_all_vars`` (the files the static one has beside it in
    ``group_vars/all``). Strings Ansible could template are marked unsafe."""
    hostvars = {name: _mark(hv, _json_unsafe) for name, hv in model.hostvars.items()}
    all_vars = {**model.all_vars, **(extra_all_vars or {})}
    out: dict = {"_meta": {"hostvars": hostvars},
                 "all": {"children": sorted(model.groups), "vars": _mark(all_vars, _json_unsafe)}}
    for name in model.groups:
        out[name] = {}
        if name in model.hosts:
            out[name]["hosts"] = model.hosts[name]
        if name in model.children:
            out[name]["children"] = model.children[name]
        if name in model.group_vars:
            out[name]["vars"] = _mark(model.group_vars[name], _json_unsafe)
    return out


def dynamic_host(model: InventoryModel, name: str) -> dict:
    """``--host NAME`` output of the protocol (strings Ansible could template marked unsafe)."""
    return _mark(model.hostvars[name], _json_unsafe)  # type: ignore[return-value]


INVENTORY_FILE = "ansible/inventory.json"


@renderer("inventory", "Ansible inventory: groups per node group, role, scheduler and SU")
def render_inventory(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    """A JSON inventory (Ansible's yaml plugin reads it with its JSON parser, several times faster
    than YAML). One line per host in each group that lists it: in its node group with its own
    variables, in its SU (and node state) with none; one line per group of child groups (roles,
    schedulers, gpu_nodes); a group's variables on its group's line. Strings Ansible could
    template are marked unsafe (:func:`json_unsafe`). JSON holds no comment: the file says what
    rendered it through ``aiinfra_env`` and ``aiinfra_manifests``."""
    model = inventory_model(cluster)
    quoted = {h: json.dumps(h) for h in model.hostvars}  # each name once, though listed in two or three groups
    entries = [f'"vars": {json_unsafe(model.all_vars)}']
    for name in sorted(model.groups):
        head = []
        if name in model.group_vars:
            head.append(f'"vars": {json_unsafe(model.group_vars[name])}')
        if name in model.children:
            head.append(f'"children": {json.dumps(dict.fromkeys(model.children[name], {}))}')
        hosts = model.hosts.get(name)
        if hosts is not None:  # one per line; in its node group with its variables
            if name in model.node_groups:
                lines = [f"{quoted[h]}: {json_unsafe(model.hostvars[h])}" for h in hosts]
            else:
                lines = [f"{quoted[h]}: {{}}" for h in hosts]
            head.append('"hosts": {\n' + "".join(line + ",\n" for line in lines[:-1]) + "".join(lines[-1:])
                        + ("\n" if lines else "") + "}")  # an empty group too: `{` and `}` on their lines
        entries.append(f"{json.dumps(name)}: {{{', '.join(head)}}}")
    body = entries[0] + ',\n"children": {\n' + ",\n".join(entries[1:]) + "\n}"
    return {INVENTORY_FILE: '{"all": {' + body + "}}\n"}


def read_inventory(text: str) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """The host variables and group members (child groups' hosts included) of a rendered
    ``inventory.json``: for readers that are not Ansible (test beds, benchmarks)."""
    data = json.loads(text)["all"]
    hostvars: dict[str, dict] = {}
    direct: dict[str, list[str]] = {}
    kids: dict[str, list[str]] = {}
    for name, entry in (data.get("children") or {}).items():
        for host, hv in (entry.get("hosts") or {}).items():
            direct.setdefault(name, []).append(host)
            hostvars.setdefault(host, {}).update(hv or {})
        kids[name] = list(entry.get("children") or {})

    def members(name: str) -> list[str]:
        out = dict.fromkeys(direct.get(name, []))
        for child in kids.get(name, []):
            out.update(dict.fromkeys(members(child)))
        return list(out)

    return hostvars, {name: members(name) for name in kids}


def reserved_group_clash(names: list[str]) -> list[str]:
    """Node group names whose Ansible group would clash with a derived one."""
    from aiinfra.spec.models import NodeRole

    reserved = DERIVED_GROUPS | set(NodeRole.__args__)  # type: ignore[attr-defined]
    return [n for n in names if ansible_name(n) in reserved or ansible_name(n).startswith("su")]
