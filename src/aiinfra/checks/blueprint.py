"""``blueprint``-phase validators: relations between parts of a blueprint that its types cannot
express. They see the parsed Blueprint and the expanded hostlists, and guard everything
:func:`aiinfra.spec.cluster.build_cluster` relies on."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from ClusterShell.NodeSet import NodeSet

from aiinfra.catalog.gpus import GPU_ALIASES, GPUS
from aiinfra.catalog.links import LINK_RATES, link_rate
from aiinfra.catalog.monitoring import check_exporters
from aiinfra.catalog.names import suggest
from aiinfra.catalog.versions import SLURM_SOURCES, VERSION_FORMATS, check_format, check_versions
from aiinfra.checks.fabric import levels_fit
from aiinfra.checks.registry import BlueprintView, error, validator, warning
from aiinfra.errors import Problem
from aiinfra.spec import addressing
from aiinfra.spec.cluster import node_states, scalable_units
from aiinfra.spec.models import Blueprint

# ------------------------------------------------------------------ names and references


def _duplicates(names: list[str]) -> Iterator[tuple[int, str]]:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            yield i, name
        seen.add(name)


@validator()
def unique_names(v: BlueprintView) -> Iterator[Problem]:
    bp = v.bp
    for section, items in (("node_groups", bp.node_groups), ("training", bp.training), ("serving", bp.serving)):
        for i, name in _duplicates([x.name for x in items]):
            yield error((section, i, "name"), "duplicate-name", f"'{name}' is declared twice in {section}",
                        "give every entry its own name")
    if bp.slurm:
        for i, name in _duplicates([p.name for p in bp.slurm.partitions]):
            yield error(("slurm", "partitions", i, "name"), "duplicate-name", f"partition '{name}' declared twice",
                        "rename or merge one of them")


@validator()
def node_types_exist(v: BlueprintView) -> Iterator[Problem]:
    for i, g in enumerate(v.bp.node_groups):
        if g.type not in v.bp.node_types:
            yield error(("node_groups", i, "type"), "undefined-node-type",
                        f"node type '{g.type}' is not defined{suggest(g.type, v.bp.node_types)}",
                        f"define it under node_types or use one of: {', '.join(sorted(v.bp.node_types))}")


@validator()
def catalog_references(v: BlueprintView) -> Iterator[Problem]:
    for name, nt in v.bp.node_types.items():
        added = v.bp.catalog.gpus
        if nt.gpu and nt.gpu.model not in added and nt.gpu.model.lower() not in GPUS \
                and nt.gpu.model.lower() not in GPU_ALIASES:
            known = [*GPUS, *added]
            yield error(("node_types", name, "gpu", "model"), "unknown-gpu-model",
                        f"GPU model '{nt.gpu.model}' is not in the catalog{suggest(nt.gpu.model, [*known, *GPU_ALIASES])}",
                        f"use one of: {', '.join(sorted(known))}, or declare it under catalog.gpus")
        if nt.rails and nt.rails.rate not in LINK_RATES:
            yield error(("node_types", name, "rails", "rate"), "unknown-link-rate",
                        f"link rate '{nt.rails.rate}' is unknown{suggest(nt.rails.rate, list(LINK_RATES))}",
                        f"use one of: {', '.join(LINK_RATES)}")
        if nt.rails and not nt.gpu:
            yield warning(("node_types", name, "rails"), "rails-without-gpus",
                          "a node type with compute rails but no GPUs joins the GPU fabric",
                          "remove rails: from a CPU-only node type, or add its gpu: section")
    fab = v.bp.fabric
    if fab and fab.rate not in LINK_RATES:
        yield error(("fabric", "rate"), "unknown-link-rate",
                    f"link rate '{fab.rate}' is unknown{suggest(fab.rate, list(LINK_RATES))}",
                    f"use one of: {', '.join(LINK_RATES)}")


@validator()
def hosts_unique(v: BlueprintView) -> Iterator[Problem]:
    owner: dict[str, int] = {}
    groups = v.bp.node_groups
    reported: set[tuple[int, int]] = set()
    for i, g in enumerate(groups):
        for host in v.hosts[g.name]:
            j = owner.setdefault(host, i)
            if j == i or (j, i) in reported:
                continue
            reported.add((j, i))
            both = NodeSet.fromlist(set(v.hosts[g.name]) & set(v.hosts[groups[j].name]))
            other = groups[j]
            if {g.scheduler, other.scheduler} >= {"slurm", "kubernetes"}:
                yield error(("node_groups", i, "hosts"), "host-two-schedulers",
                            f"{both} owned by both slurm (group '{other.name if other.scheduler == 'slurm' else g.name}') "
                            f"and kubernetes (group '{g.name if g.scheduler == 'kubernetes' else other.name}')",
                            "a node belongs to exactly one scheduler: remove it from one group")
            else:
                yield error(("node_groups", i, "hosts"), "duplicate-host",
                            f"{both} also in node group '{other.name}' (node_groups[{j}])",
                            "a host belongs to one node group; give it the union of roles there")


@validator()
def role_hosts_declared(v: BlueprintView) -> Iterator[Problem]:
    fab = v.bp.fabric
    all_hosts = {h for hosts in v.hosts.values() for h in hosts}
    if fab and fab.subnet_managers:
        missing = NodeSet.fromlist([h for h in NodeSet(fab.subnet_managers) if h not in all_hosts])
        if len(missing):
            yield error(("fabric", "subnet_managers"), "undefined-host",
                        f"{missing} is not in any node group", "declare the host in node_groups first")


# ------------------------------------------------------------------ networks


@validator()
def networks_fit(v: BlueprintView) -> Iterator[Problem]:
    bp = v.bp
    nets = bp.networks
    flat = [("management", nets.management), ("bmc", nets.bmc)] + ([("storage", nets.storage)] if nets.storage else [])
    group_of = {h: i for i, g in enumerate(bp.node_groups) for h in v.hosts[g.name]}
    prefixes = v.addresses.blocks
    for i, g in enumerate(bp.node_groups):
        names = {addressing.split_name(h).prefix for h in v.hosts[g.name]}
        for prefix in sorted(names):
            block = prefixes[prefix]
            if g.address_index is not None and block.base != g.address_index:
                yield error(("node_groups", i, "address_index"), "address-overlap",
                            f"address_index {g.address_index} disagrees with {block.base}, the index another group "
                            f"gives host number 1 of '{prefix}' (a host's index follows its name)",
                            f"remove address_index here or set it to {block.base}: {prefix} hosts share one numbering")
    indices = v.addresses.indices
    for first, second, index in addressing.colliding(indices)[:20]:
        yield error(("node_groups", group_of[second], "address_index"), "address-overlap",
                    f"{second} and {first} both get host index {index}",
                    "give the groups' name prefixes address_index values far enough apart")
    highest = max(indices.values(), default=0)
    for key, net in flat:
        cap = addressing.host_capacity(net.cidr)
        if highest > cap:
            yield error(("networks", key, "cidr"), "cidr-too-small",
                        f"{net.cidr} holds host indices up to {cap} but the plan needs {highest}",
                        "use a shorter prefix (a larger network)")
    if nets.ipoib:
        rails = _max_rails(bp)
        subnets = addressing.rail_subnets(nets.ipoib.cidr, nets.ipoib.rail_prefix, rails)
        if len(subnets) < rails:
            yield error(("networks", "ipoib", "rail_prefix"), "cidr-too-small",
                        f"{nets.ipoib.cidr} splits into {len(subnets)} /{nets.ipoib.rail_prefix} rail subnets, "
                        f"{rails} rails need one each", "shorten the ipoib prefix or lengthen rail_prefix")
        elif subnets and highest > subnets[0].num_addresses - 2:
            yield error(("networks", "ipoib", "rail_prefix"), "cidr-too-small",
                        f"a /{nets.ipoib.rail_prefix} rail subnet holds {subnets[0].num_addresses - 2} hosts, "
                        f"the plan needs index {highest}", "use a shorter rail_prefix")
        elif subnets and _uses_kubernetes(bp) and highest >= subnets[0].num_addresses // 2:
            # the Network Operator's rail networks give pods the upper half of each rail subnet
            yield error(("networks", "ipoib", "rail_prefix"), "ipoib-pod-range-too-small",
                        f"host index {highest} reaches the upper half of a /{nets.ipoib.rail_prefix} rail subnet, "
                        f"where Kubernetes pods take their rail addresses (hosts must stay below index "
                        f"{subnets[0].num_addresses // 2})",
                        "use a shorter rail_prefix: hosts take the lower half of a rail subnet, pods the upper")
    # overlaps between every pair of declared networks, Kubernetes' included
    named: list[tuple[tuple, str]] = [(("networks", k, "cidr"), n.cidr) for k, n in flat]
    if nets.ipoib:
        named.append((("networks", "ipoib", "cidr"), nets.ipoib.cidr))
    if bp.kubernetes:
        named += [(("kubernetes", "pod_cidr"), bp.kubernetes.pod_cidr),
                  (("kubernetes", "service_cidr"), bp.kubernetes.service_cidr)]
    for i, (path_a, a) in enumerate(named):
        for path_b, b in named[i + 1:]:
            if ipaddress.IPv4Network(a).overlaps(ipaddress.IPv4Network(b)):
                yield error(path_b, "cidr-overlap", f"{b} overlaps {a} ({'.'.join(map(str, path_a))})",
                            "give every network its own range")


def _uses_kubernetes(bp: Blueprint) -> bool:
    return bp.kubernetes is not None and any(g.scheduler == "kubernetes" for g in bp.node_groups)


def _max_rails(bp: Blueprint) -> int:
    return max((len(NodeSet(nt.rails.hcas)) for nt in bp.node_types.values() if nt.rails), default=0)


# ------------------------------------------------------------------ fabric


@validator()
def fabric_fits(v: BlueprintView) -> Iterator[Problem]:
    bp = v.bp
    gpu_nodes = sum(len(v.hosts[g.name]) for g in bp.node_groups
                    if g.type in bp.node_types and bp.node_types[g.type].rails)
    if not gpu_nodes:
        return
    fab = bp.fabric
    if fab is None:
        yield error(("fabric",), "missing-fabric", "node types declare compute rails but there is no fabric section",
                    "add fabric: {topology, rate, su_nodes}")
        return
    rails_per_type = {len(NodeSet(nt.rails.hcas)) for nt in bp.node_types.values() if nt.rails}
    if len(rails_per_type) > 1:
        yield error(("node_types",), "rails-mismatch",
                    f"node types on one fabric declare different rail counts: {sorted(rails_per_type)}",
                    "every GPU node type on the fabric needs the same number of rails")
    if fab.rate not in LINK_RATES:
        return
    radix = fab.switch_radix or link_rate(fab.rate).switch_radix
    if fab.su_nodes > radix // 2:
        yield warning(("fabric", "su_nodes"), "fabric-oversubscribed",
                      f"{fab.su_nodes} nodes per SU exceed the {radix // 2} down-ports of a {radix}-port leaf",
                      f"use su_nodes <= {radix // 2} for a non-blocking leaf")
    # the cabling map covers every GPU node, once, and nothing else
    every_gpu_host = [h for g in bp.node_groups if g.type in bp.node_types and bp.node_types[g.type].rails
                      for h in v.hosts[g.name]]
    gone = {h for h, st in node_states(bp).items() if st.state == "decommissioned"}
    gpu_hosts = [h for h in every_gpu_host if h not in gone]
    if fab.scalable_units:
        seen: dict[str, int] = {}
        for su, hostlist in sorted(fab.scalable_units.items()):
            members = list(NodeSet(hostlist))
            for h in members:
                if h in seen:
                    yield error(("fabric", "scalable_units", su), "duplicate-host",
                                f"{h} is cabled to SU {seen[h]} and SU {su}", "list every node in one SU")
                seen.setdefault(h, su)
            if len(members) > fab.su_nodes:
                yield error(("fabric", "scalable_units", su), "su-over-capacity",
                            f"SU {su} lists {len(members)} nodes, more than su_nodes {fab.su_nodes}",
                            "split the SU or raise fabric.su_nodes")
        missing = [h for h in gpu_hosts if h not in seen]
        if missing:
            yield error(("fabric", "scalable_units"), "su-map-incomplete",
                        f"{len(missing)} GPU node(s) are in no SU of the cabling map: {NodeSet.fromlist(missing[:1000])}",
                        "add them to their SU's hostlist")
        unknown = [h for h in seen if h not in set(every_gpu_host)]  # a decommissioned node may stay listed
        if unknown:
            yield error(("fabric", "scalable_units"), "undefined-host",
                        f"the cabling map names {NodeSet.fromlist(unknown[:1000])}, not GPU nodes of any node group",
                        "remove them, or add them to a GPU node group")
        if missing or unknown:
            return
    sus = scalable_units(bp, gpu_hosts)
    members: dict[int, int] = {}
    for su in sus.values():
        members[su] = members.get(su, 0) + 1
    partial = sorted(su for su, n in members.items() if n < fab.su_nodes)
    if partial:
        yield warning(("fabric", "su_nodes"), "fabric-partial-su",
                      f"{len(partial)} SU(s) hold fewer than {fab.su_nodes} nodes: "
                      + ", ".join(f"SU {su} ({members[su]})" for su in partial[:8]) + ("..." if len(partial) > 8 else ""),
                      "add nodes to fill the SU or accept a partial one (spares and repairs leave gaps)")
    yield from levels_fit(fab, radix, max(rails_per_type, default=0), members)
    # a scheduler boundary inside an SU shares leaf switches between Slurm and Kubernetes
    owner = {h: i for i, g in enumerate(bp.node_groups) for h in v.hosts[g.name]}
    first_group: dict[int, int] = {}
    warned: set[int] = set()
    for h in gpu_hosts:
        su, i = sus[h], owner[h]
        first_group.setdefault(su, i)
        j = first_group[su]
        if i != j and bp.node_groups[i].scheduler != bp.node_groups[j].scheduler and i not in warned:
            warned.add(i)
            yield warning(("node_groups", i, "hosts"), "fabric-su-split",
                          f"group '{bp.node_groups[i].name}' shares SU {su} with '{bp.node_groups[j].name}' "
                          "of another scheduler (their jobs share leaf switches)",
                          "align the groups to whole SUs (node numbers, or fabric.scalable_units)")


# ------------------------------------------------------------------ schedulers


@validator()
def scheduler_sections(v: BlueprintView) -> Iterator[Problem]:
    bp = v.bp
    by_name = {g.name: g for g in bp.node_groups}
    roles = {r for g in bp.node_groups for r in g.roles}
    uses_slurm = any(g.scheduler == "slurm" for g in bp.node_groups)
    uses_k8s = any(g.scheduler == "kubernetes" for g in bp.node_groups)
    if uses_slurm and bp.slurm is None:
        yield error(("slurm",), "missing-section", "node groups use scheduler 'slurm' but there is no slurm section",
                    "add slurm: {cluster_name, state_save_location, partitions}")
    if uses_slurm and "slurm_controller" not in roles:
        yield error(("node_groups",), "missing-role", "node groups use scheduler 'slurm' but no group has role "
                    "slurm_controller", "add roles: [slurm_controller] to a management group")
    if uses_slurm and not bp.versions.slurm:
        yield error(("versions", "slurm"), "missing-version", "Slurm is used but versions.slurm is not pinned",
                    "pin it, e.g. versions.slurm: 24.11.5")
    if uses_slurm and bp.slurm and bp.versions.slurm and bp.slurm.install.method == "source":
        inst = bp.slurm.install
        if bp.versions.slurm not in SLURM_SOURCES and not (inst.source_url and inst.source_sha256):
            yield error(("slurm", "install"), "slurm-source-unknown",
                        f"the slurm role builds Slurm {bp.versions.slurm} from source, but the catalog lists no "
                        f"release tarball for it (known: {', '.join(sorted(SLURM_SOURCES))})",
                        "set slurm.install.source_url and source_sha256 to the tarball on the site mirror, "
                        "or use install.method: packages with a site repository")
    if uses_k8s and "k8s_control_plane" not in roles:
        yield error(("node_groups",), "missing-role", "node groups use scheduler 'kubernetes' but no group has "
                    "role k8s_control_plane", "add roles: [k8s_control_plane] to a group")
    if uses_k8s and not bp.versions.kubernetes:
        yield error(("versions", "kubernetes"), "missing-version",
                    "Kubernetes is used but versions.kubernetes is not pinned", "pin it, e.g. versions.kubernetes: 1.31.7")
    for i, g in enumerate(bp.node_groups):
        nt = bp.node_types.get(g.type)
        if nt and nt.gpu and g.scheduler == "none":
            yield warning(("node_groups", i, "scheduler"), "gpu-nodes-unscheduled",
                          f"GPU group '{g.name}' has no scheduler: its GPUs run nothing",
                          "set scheduler: slurm or kubernetes")
    if bp.slurm:
        for i, part in enumerate(bp.slurm.partitions):
            for j, ref in enumerate(part.node_groups):
                path = ("slurm", "partitions", i, "node_groups", j)
                if ref not in by_name:
                    yield error(path, "undefined-node-group",
                                f"node group '{ref}' is not defined{suggest(ref, by_name)}",
                                f"use one of: {', '.join(by_name)}")
                elif by_name[ref].scheduler != "slurm":
                    yield error(path, "wrong-scheduler",
                                f"node group '{ref}' has scheduler '{by_name[ref].scheduler}', not slurm",
                                "a partition holds only groups with scheduler: slurm")
        defaults = [p.name for p in bp.slurm.partitions if p.default]
        if len(defaults) > 1:
            yield error(("slurm", "partitions"), "several-defaults", f"partitions {defaults} are all default",
                        "keep default: true on one partition")
        qos_names = {q.name for q in bp.slurm.qos}
        for i, q in enumerate(bp.slurm.qos):
            for j, other in enumerate(q.preempt):
                if other not in qos_names:
                    yield error(("slurm", "qos", i, "preempt", j), "undefined-qos",
                                f"QoS '{other}' is not defined{suggest(other, qos_names)}",
                                "declare it under slurm.qos or remove it from preempt")


# ------------------------------------------------------------------ workloads


@validator()
def workload_groups(v: BlueprintView) -> Iterator[Problem]:
    bp = v.bp
    by_name = {g.name: g for g in bp.node_groups}
    for section, items, want in (("training", bp.training, ("slurm", "kubernetes")),
                                 ("serving", bp.serving, ("kubernetes", "slurm"))):
        for i, item in enumerate(items):
            ref = item.node_group
            if ref not in by_name:
                yield error((section, i, "node_group"), "undefined-node-group",
                            f"node group '{ref}' is not defined{suggest(ref, by_name)}",
                            f"use one of: {', '.join(by_name)}")
                continue
            group = by_name[ref]
            nt = bp.node_types.get(group.type)
            if nt is not None and nt.gpu is None:
                yield error((section, i, "node_group"), "no-gpus", f"node group '{ref}' has no GPUs",
                            "run it on a node group whose node type has a gpu: section")
            if group.scheduler not in want:
                yield error((section, i, "node_group"), "wrong-scheduler",
                            f"node group '{ref}' has scheduler '{group.scheduler}'",
                            "run workloads on a group with scheduler slurm or kubernetes")
            nodes = getattr(item, "nodes", None)
            if nodes is not None and nodes > len(v.hosts[ref]):
                yield error((section, i, "nodes"), "too-many-nodes",
                            f"{nodes} nodes requested but group '{ref}' has {len(v.hosts[ref])}",
                            f"use at most {len(v.hosts[ref])} nodes")
    for i, job in enumerate(bp.training):
        if job.global_batch is not None and job.global_batch_tokens is not None:
            yield error(("training", i, "global_batch_tokens"), "conflicting-keys",
                        "give global_batch (sequences) or global_batch_tokens, not both",
                        "remove one of the two keys")
        if job.global_batch is None and job.global_batch_tokens is None:
            yield error(("training", i, "global_batch"), "missing-key",
                        "the global batch is not set", "set global_batch (sequences) or global_batch_tokens")
    for i, item in enumerate([*bp.training, *bp.serving]):
        if item.image is not None and item.image not in bp.versions.images:
            section, idx = ("training", i) if i < len(bp.training) else ("serving", i - len(bp.training))
            yield error((section, idx, "image"), "undefined-image",
                        f"image '{item.image}' is not pinned in versions.images{suggest(item.image, bp.versions.images)}",
                        "pin it under versions.images (name: registry/image:tag) or use a pinned key")


# ------------------------------------------------------------------ versions

# a release the renderers compare: major.minor[.patch...], a leading v and a -/+ suffix allowed
RELEASE = re.compile(r"v?\d+\.\d+(\.\d+)*([-+][0-9A-Za-z.+-]*)?")
RELEASE_EXAMPLES = {"slurm": "24.11.5", "kubernetes": "1.31.7"}


@validator()
def versions_compatible(v: BlueprintView) -> Iterator[Problem]:
    versions = v.bp.versions.model_dump()
    for key in VERSION_FORMATS:
        if versions.get(key) is None:
            continue
        why = check_format(key, versions[key])
        if why:
            versions[key] = None  # compatibility rules never read a malformed version
            yield error(("versions", key), "bad-version", why,
                        f"pin the exact release, e.g. {key}: {VERSION_FORMATS[key][1]}")
    exporters = versions.get("exporters")
    for hit in check_versions(versions) + (check_exporters(exporters) if isinstance(exporters, dict) else []):
        yield error(("versions", hit.fields[0]), hit.rule, hit.message, hit.hint)
    for key in ("slurm", "kubernetes"):
        text = versions.get(key)
        if text is not None and not RELEASE.fullmatch(text.strip()):
            yield error(("versions", key), "bad-version",
                        f"'{text}' is not a {key} release: the renderers adapt to its major.minor",
                        f"pin a release such as {RELEASE_EXAMPLES[key]}")
