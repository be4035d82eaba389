"""Slurm's cluster-wide configuration under ``manifests/<env>/slurm/``.

Everything comes from the Cluster object: controllers and the accounting host from node-group
roles, node lines from node types, GRES from the GPU catalog, switches from the fabric model.
The model is computed here in Python (:func:`slurm_model`); the templates under
``templates/slurm/`` only print it.

Files:

- ``slurm.conf``     controllers, plugins, accounting, hooks, node lines folded into hostlists,
                     partitions with memory defaults.
- ``gres.conf``      per GPU node type: ``AutoDetect=nvml`` or explicit ``File=`` lines with
                     ``Cores=`` and ``Links=`` (``slurm.gres_autodetect``).
- ``topology.conf``  one switch per scalable unit (SU) holding Slurm nodes; above them one spine (two levels),
                     or one switch per spine group and a core above those (three levels).
- ``cgroup.conf``    cores, devices and RAM constrained.
- ``slurmdbd.conf``  without ``StoragePass``: the slurm role adds it on the host from a secret.
- ``plugstack.conf`` (+ ``plugstack.conf.d/pyxis.conf``) SPANK plugins: pyxis for containers.
- ``nodecheck.json`` what the node health check expects per node (GPUs, HCA ports, Lustre).

What the slurm role needs besides these files (the paths the daemons use, the accounting objects
for ``sacctmgr``, the slurm.conf lines whose change needs a restart, the pyxis plugin) is
:func:`role_inputs`: ``host_vars`` renders it into ``ansible/group_vars/all/slurm.yml``, and the
files above print the same values, so the role never parses a rendered file.

Slurm releases differ: :data:`OPTION_MIN_VERSION` names the options rendered only from a given
release on (``versions.slurm``); tests run Debian 12's 22.05, production runs 24.11.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from aiinfra.catalog.gpus import GpuModel
from aiinfra.catalog.links import link_rate
from aiinfra.catalog.versions import SLURM_SOURCES, version_tuple
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.fabric_env import rail_hcas
from aiinfra.render import Artifacts, renderer
from aiinfra.render.templates import fold, render_template
from aiinfra.spec.cluster import Cluster, Group, su_name
from aiinfra.spec.fabric import sg_name, spine_group_of
from aiinfra.spec.models import Slurm

MIB = 2**20
GIB = 2**30


@dataclass(frozen=True)
class SlurmHostSettings:
    """What every cluster's hosts share: printed into the rendered files and handed to the slurm
    and container_runtime roles as ``aiinfra_slurm_<field>`` (group_vars/all/slurm.yml), so the
    files and the roles read one value. ``%n`` is the node name (one slurmd per host in
    production, several per machine in test beds)."""

    config_dir: str = "/etc/slurm"  # the slurm role installs the rendered files here
    user: str = "slurm"  # SlurmUser of slurm.conf and slurmdbd.conf
    health_check_program: str = "/usr/local/sbin/aiinfra-nodecheck"  # shipped by the slurm role
    slurmctld_pid_file: str = "/run/slurmctld.pid"
    slurmctld_log_file: str = "/var/log/slurm/slurmctld.log"
    slurmd_spool_dir: str = "/var/spool/slurmd/%n"
    slurmd_pid_file: str = "/run/slurmd-%n.pid"
    slurmd_log_file: str = "/var/log/slurm/slurmd-%n.log"
    dbd_pid_file: str = "/run/slurmdbd.pid"
    dbd_log_file: str = "/var/log/slurm/slurmdbd.log"
    db_name: str = "slurm_acct_db"  # StorageLoc: the accounting database in MariaDB
    db_user: str = "slurm"  # StorageUser
    # pyxis (NVIDIA's SPANK plugin): where container_runtime installs it, and its runtime directory.
    pyxis_plugin: str = "/usr/local/lib/slurm/spank_pyxis.so"
    pyxis_runtime_path: str = "/run/pyxis"

    @property
    def prolog_glob(self) -> str:
        return f"{self.config_dir}/prolog.d/*"

    @property
    def epilog_glob(self) -> str:
        return f"{self.config_dir}/epilog.d/*"


HOST_SETTINGS = SlurmHostSettings()
TOPOLOGY_PLUGIN = "topology/tree"

# slurm.conf keys whose change needs slurmctld and slurmd restarted (`scontrol reconfigure` does not
# apply them). Their lines are the role's restart record (aiinfra_slurm_restart_settings): the role
# restarts the daemons when the record changes, and reconfigures for any other change.
RESTART_KEYS = (
    "ClusterName", "SlurmctldHost", "SlurmctldPort", "SlurmdPort", "NodeName", "SelectType",
    "SelectTypeParameters", "GresTypes", "AuthType", "ProctrackType", "TaskPlugin", "SlurmdSpoolDir",
    "StateSaveLocation", "SlurmUser", "TopologyPlugin", "AccountingStorageType", "AccountingStorageHost",
    "JobAcctGatherType", "PrologFlags", "SlurmctldParameters", "SlurmdParameters",
)

# RAM left to the OS, the page cache of the parallel file system and the daemons: a node whose
# RealMemory exceeds what the kernel reports is drained, and a job may use all of RealMemory.
OS_RESERVED_FRACTION = 0.05
OS_RESERVED_MIN_BYTES = 2 * GIB

# slurm.conf options that not every supported release knows: rendered only from that release on.
# (Slurm 22.05, Debian 12, is the oldest release the tests run.)
OPTION_MIN_VERSION: dict[str, tuple[int, int]] = {
    # step management by the job's batch host: takes per-step RPCs off slurmctld for big jobs
    "SlurmctldParameters=enable_stepmgr": (24, 5),
}

# MailProg when the blueprint turns job mail off (slurm.mail_prog: null): accepts the mail command's
# arguments and sends nothing, where Slurm's default (/bin/mail) would fail on every mail event.
NO_MAIL_PROG = "/bin/true"

# QoS preemption mode when any QoS may preempt another.
PREEMPT_MODE = "REQUEUE"


@dataclass(frozen=True)
class NodeLine:
    """One ``NodeName=`` line: a node group (every Slurm node appears in exactly one)."""

    group: str
    hostlist: str
    hosts: tuple[str, ...]
    cpus: int
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    real_memory_mib: int
    gres: str | None  # gpu:h100:8


@dataclass(frozen=True)
class GresFile:
    index: int
    file: str
    cores: str
    links: str
    hca: str | None


@dataclass(frozen=True)
class GresGroup:
    hostlist: str
    type: str
    count: int
    files: tuple[GresFile, ...]  # empty with AutoDetect


@dataclass(frozen=True)
class PartitionLine:
    name: str
    hostlist: str
    default: bool
    max_time: str
    def_mem_per_gpu_mib: int | None
    def_mem_per_cpu_mib: int | None


@dataclass(frozen=True)
class DownLine:
    """One ``DownNodes=`` line: nodes the blueprint takes out of service, with one state and reason."""

    hostlist: str
    state: str  # DRAIN or DOWN (slurm.conf(5), DOWN NODE CONFIGURATION)
    reason: str


SLURM_STATE = {"drain": "DRAIN", "down": "DOWN"}


@dataclass(frozen=True)
class Switch:
    name: str
    nodes: str | None = None
    switches: str | None = None


@dataclass
class SlurmModel:
    version: tuple[int, ...]
    version_text: str
    cluster_name: str
    controllers: list[str]
    dbd_hosts: list[str]
    state_save_location: str
    nodes: list[NodeLine]
    down: list[DownLine]
    partitions: list[PartitionLine]
    gres: list[GresGroup]
    gres_autodetect: str
    switches: list[Switch]
    gpu_types: list[str]
    qos: list[dict]
    preempt: bool
    trust_node_config: bool
    health_check_interval_s: int
    mail_prog: str
    mail_domain: str | None
    options: list[str] = field(default_factory=list)  # version-gated extras
    host: SlurmHostSettings = HOST_SETTINGS
    fabric_levels: int = 2  # switch levels of the fabric topology.conf describes

    @property
    def accounting(self) -> bool:
        return bool(self.dbd_hosts)

    @property
    def topology_plugin(self) -> str | None:
        """TopologyPlugin: the switch tree when topology.conf has switches."""
        return TOPOLOGY_PLUGIN if self.switches else None


def gpu_type(model: GpuModel) -> str:
    """The GRES type of a GPU model: the catalog name up to the first '-' (h100-80gb -> h100)."""
    return model.name.split("-")[0]


def real_memory_mib(memory_bytes: int) -> int:
    """RealMemory in MiB: the node's RAM less the OS reserve (5 %, at least 2 GiB)."""
    reserve = max(OS_RESERVED_MIN_BYTES, int(memory_bytes * OS_RESERVED_FRACTION))
    return max(1, (memory_bytes - reserve) // MIB)


def cores_of_gpu(index: int, gpus: int, sockets: int, cores_per_socket: int) -> str:
    """Cores= of GPU ``index``: the cores of the socket it hangs off (GPUs split evenly over sockets)."""
    socket = index * sockets // gpus
    first = socket * cores_per_socket
    last = first + cores_per_socket - 1
    return f"{first}-{last}" if last > first else str(first)


def nvlink_links(index: int, gpus: int, domain: int) -> str:
    """Links= of GPU ``index``: -1 for itself, 1 for a GPU of its NVLink domain, 0 otherwise."""
    out = []
    for peer in range(gpus):
        if peer == index:
            out.append("-1")
        else:
            out.append("1" if peer // domain == index // domain else "0")
    return ",".join(out)


def _node_line(group: Group) -> NodeLine:
    nt = group.node_type
    cpu = nt.cpu
    gres = None
    if group.gpu is not None:
        gres = f"gpu:{gpu_type(group.gpu)}:{group.gpus_per_node}"
    return NodeLine(
        group=group.name,
        hostlist=group.hostlist,
        hosts=group.hosts,
        cpus=cpu.sockets * cpu.cores_per_socket * cpu.threads_per_core,
        sockets=cpu.sockets,
        cores_per_socket=cpu.cores_per_socket,
        threads_per_core=cpu.threads_per_core,
        real_memory_mib=real_memory_mib(nt.memory),
        gres=gres,
    )


def _down_lines(groups: list[Group]) -> list[DownLine]:
    """The blueprint's ``nodes:`` states of Slurm nodes, one line per (state, reason)."""
    by_state: dict[tuple[str, str], list[str]] = {}
    for g in groups:
        for host, st in g.states.items():
            by_state.setdefault((SLURM_STATE[st.state], st.reason), []).append(host)
    return [DownLine(fold(hosts), state, reason) for (state, reason), hosts in sorted(by_state.items())]


def _gres_groups(cluster: Cluster, autodetect: str, prefix: str) -> list[GresGroup]:
    """One entry per GPU node type among the Slurm groups (groups of one type share their lines)."""
    by_type: dict[str, list[Group]] = {}
    for g in cluster.groups_for_scheduler("slurm"):
        if g.gpu is not None:
            by_type.setdefault(g.spec.type, []).append(g)
    out = []
    for _type_name, groups in sorted(by_type.items()):
        first = groups[0]
        nt = first.node_type
        gpus = first.gpus_per_node
        hcas = rail_hcas(cluster, first)
        files: tuple[GresFile, ...] = ()
        if autodetect == "off":
            files = tuple(
                GresFile(
                    index=i,
                    file=f"{prefix}{i}",
                    cores=cores_of_gpu(i, gpus, nt.cpu.sockets, nt.cpu.cores_per_socket),
                    links=nvlink_links(i, gpus, first.gpu.nvlink_domain_gpus),
                    hca=hcas[i] if i < len(hcas) else None,
                )
                for i in range(gpus)
            )
        out.append(GresGroup(fold([h for g in groups for h in g.hosts]), gpu_type(first.gpu), gpus, files))
    return out


def _switches(cluster: Cluster) -> list[Switch]:
    """One switch per SU that holds Slurm nodes (only its Slurm nodes); above them a spine (two levels), or
    one switch per spine group holding such SUs and a core above those (three levels).

    topology.conf(5) of Slurm 24.11 (topology/tree): each line names a switch and its children, nodes
    (``Nodes=``) or switches (``Switches=``), both as hostlist expressions; every node hangs under some
    switch, and a job spans only nodes under one connected tree, so the tree has a single top."""
    slurm_hosts = {h for g in cluster.groups_for_scheduler("slurm") for h in g.hosts}
    per_su: dict[int, list[str]] = {}
    for host in cluster.hosts.values():
        if host.su is not None and host.name in slurm_hosts:
            per_su.setdefault(host.su, []).append(host.name)
    sus = [Switch(su_name(su), nodes=fold(hosts)) for su, hosts in sorted(per_su.items())]
    fab = cluster.fabric
    if fab is not None and fab.levels == 3:
        below: dict[int, list[str]] = {}
        for su in sorted(per_su):
            below.setdefault(spine_group_of(su, fab.sus_per_spine_group), []).append(su_name(su))
        groups = [Switch(sg_name(g), switches=fold(names)) for g, names in sorted(below.items())]
        core = [Switch("core", switches=fold([s.name for s in groups]))] if len(groups) > 1 else []
        return [*sus, *groups, *core]
    if len(sus) > 1:
        sus.append(Switch("spine", switches=fold([s.name for s in sus])))
    return sus


def _partitions(cluster: Cluster, lines: dict[str, NodeLine], def_mem_per_gpu: int | None) -> list[PartitionLine]:
    out = []
    for part in cluster.blueprint.slurm.partitions:
        groups = [cluster.groups[name] for name in part.node_groups]
        hosts = [h for g in groups for h in g.hosts]
        gpu_groups = [g for g in groups if g.gpus_per_node]
        mem_gpu = mem_cpu = None
        if gpu_groups:
            mem_gpu = def_mem_per_gpu // MIB if def_mem_per_gpu else min(
                lines[g.name].real_memory_mib // g.gpus_per_node for g in gpu_groups
            )
        else:
            mem_cpu = min(lines[g.name].real_memory_mib // lines[g.name].cpus for g in groups)
        out.append(PartitionLine(part.name, fold(hosts), part.default, part.max_time, mem_gpu, mem_cpu))
    return out


def slurm_model(cluster: Cluster) -> SlurmModel:
    """Everything the Slurm templates print, derived from the cluster."""
    bp = cluster.blueprint
    spec = bp.slurm
    assert spec is not None
    version = version_tuple(bp.versions.slurm or "0")
    groups = cluster.groups_for_scheduler("slurm")
    lines = {g.name: _node_line(g) for g in groups}
    options = [opt for opt, since in OPTION_MIN_VERSION.items() if version[:2] >= since]
    qos = [
        {
            "name": q.name,
            "priority": q.priority,
            "max_gpus_per_user": q.max_gpus_per_user,
            "preempt": sorted(q.preempt),
        }
        for q in spec.qos
    ]
    return SlurmModel(
        version=version,
        version_text=bp.versions.slurm or "unknown",
        cluster_name=spec.cluster_name,
        controllers=cluster.hosts_with_role("slurm_controller"),
        dbd_hosts=cluster.hosts_with_role("slurmdbd"),
        state_save_location=spec.state_save_location,
        nodes=list(lines.values()),
        down=_down_lines(groups),
        partitions=_partitions(cluster, lines, spec.def_mem_per_gpu),
        gres=_gres_groups(cluster, spec.gres_autodetect, spec.gres_device_prefix),
        gres_autodetect=spec.gres_autodetect,
        switches=_switches(cluster),
        gpu_types=sorted({gpu_type(g.gpu) for g in groups if g.gpu is not None}),
        qos=qos,
        preempt=any(q.preempt for q in spec.qos),
        trust_node_config=spec.trust_node_config,
        health_check_interval_s=spec.health_check_interval_s,
        mail_prog=spec.mail_prog or NO_MAIL_PROG,
        mail_domain=spec.mail_domain,
        options=options,
        fabric_levels=cluster.fabric.levels if cluster.fabric is not None else 2,
    )


def node_check_group(cluster: Cluster, g: Group) -> dict:
    """What the node health check expects of the nodes of ``g``: one entry of ``nodecheck.json``,
    for Slurm's groups here and for Kubernetes' GPU groups in ``k8s/node-health/`` (GRES null:
    Kubernetes has none, the check compares the GPU count with the blueprint's)."""
    storage = cluster.blueprint.storage  # the chosen parallel file system: Lustre or GPFS
    nt = g.node_type
    gres = f"gpu:{gpu_type(g.gpu)}:{g.gpus_per_node}" if g.gpu is not None and g.scheduler == "slurm" else None
    entry: dict = {"group": g.name, "nodes": g.hostlist, "gpus": g.gpus_per_node, "gres": gres}
    if nt.rails:
        entry["hcas"] = rail_hcas(cluster, g)
        entry["hca_rate_gbps"] = link_rate(nt.rails.rate).ibstat_rate
    else:
        entry["hcas"] = []
    fs = storage.parallel
    entry[f"{storage.parallel_fs}_mountpoint"] = fs.mountpoint if fs and storage.client_role in g.roles else None
    return entry


def node_checks(cluster: Cluster) -> dict:
    """What the node health check expects, per Slurm node group (``nodecheck.json``)."""
    groups = [node_check_group(cluster, g) for g in cluster.groups_for_scheduler("slurm")]
    return {"cluster": cluster.blueprint.slurm.cluster_name, "groups": groups}


def accounting(model: SlurmModel, spec: Slurm | None = None) -> dict:
    """The cluster, its QoS, accounts and users for ``sacctmgr`` (applied by the slurm role's
    ``aiinfra-sacctmgr-sync`` on the slurmdbd host). Accounts keep the blueprint's order (a user synced
    from several unix groups defaults to the first of its accounts); unset settings are null and
    leave Slurm's value alone."""
    accounts = [
        {"name": a.name, "parent": a.parent, "description": a.description, "fairshare": a.fairshare,
         "qos": sorted(set(a.qos)), "default_qos": a.default_qos, "users": sorted(set(a.users)),
         "unix_group": a.unix_group}
        for a in (spec.accounts if spec else [])
    ]
    users = [
        {"name": u.name, "default_account": u.default_account, "fairshare": u.fairshare, "admin_level": u.admin_level}
        for u in sorted(spec.users if spec else [], key=lambda u: u.name)
    ]
    return {"cluster": model.cluster_name, "qos": model.qos, "accounts": accounts, "users": users}


def has_slurm(cluster: Cluster) -> bool:
    return cluster.blueprint.slurm is not None and bool(cluster.groups_for_scheduler("slurm"))


def _render(name: str, cluster: Cluster, model: SlurmModel) -> str:
    return render_template(f"slurm/{name}.j2", m=model, env=cluster.env, source=cluster.source,
                           preempt_mode=PREEMPT_MODE)


def restart_settings(slurm_conf: str) -> list[str]:
    """The lines of ``slurm_conf`` whose key is one of :data:`RESTART_KEYS`, in order."""
    return [line for line in slurm_conf.splitlines() if "=" in line and line.split("=", 1)[0] in RESTART_KEYS]


def role_inputs(cluster: Cluster) -> dict:
    """``aiinfra_slurm_*``: what the slurm role (and container_runtime, for pyxis) take from the
    render. The host settings always; the cluster's values null where the blueprint has no Slurm."""
    out = {f"aiinfra_slurm_{name}": value for name, value in asdict(HOST_SETTINGS).items()}
    model = slurm_model(cluster) if has_slurm(cluster) else None
    out.update({
        "aiinfra_slurm_cluster_name": model.cluster_name if model else None,
        "aiinfra_slurm_state_save_location": model.state_save_location if model else None,
        "aiinfra_slurm_topology_plugin": model.topology_plugin if model else None,
        "aiinfra_slurm_accounting": (accounting(model, cluster.blueprint.slurm)
                                     if model and model.accounting else None),
        "aiinfra_slurm_restart_settings": restart_settings(_render("slurm.conf", cluster, model)) if model else [],
        "aiinfra_slurm_install": install_settings(cluster) if model else None,
        "aiinfra_slurm_mail_prog": model.mail_prog if model else None,
        "aiinfra_slurm_gres_autodetect": model.gres_autodetect if model else None,
    })
    return out


def install_settings(cluster: Cluster) -> dict:
    """What the slurm role installs (``aiinfra_slurm_install``): the pinned release, how, and for a
    source build the tarball, its checksum and the release's prefix (<prefix>/<version>)."""
    spec, version = cluster.blueprint.slurm, cluster.blueprint.versions.slurm or ""
    inst = spec.install
    known = SLURM_SOURCES.get(version)
    out = {"method": inst.method, "version": version, "nvml": spec.gres_autodetect == "nvml"}
    if inst.method == "source":
        out.update({
            "source_url": inst.source_url or (known.url if known else None),
            "source_sha256": inst.source_sha256 or (known.sha256 if known else None),
            "prefix": f"{inst.prefix}/{version}",
            "current": f"{inst.prefix}/current",
        })
    return out


@renderer("slurm", "Slurm: slurm.conf, gres.conf, topology.conf, cgroup.conf, slurmdbd.conf, plugstack")
def render_slurm(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    if not has_slurm(cluster):
        return {}
    model = slurm_model(cluster)
    out = {
        f"slurm/{name}": _render(name, cluster, model)
        for name in ("slurm.conf", "gres.conf", "cgroup.conf", "plugstack.conf")
    }
    out["slurm/plugstack.conf.d/pyxis.conf"] = _render("pyxis.conf", cluster, model)
    out["slurm/nodecheck.json"] = json.dumps(node_checks(cluster), indent=2, sort_keys=True) + "\n"
    if model.switches:
        out["slurm/topology.conf"] = _render("topology.conf", cluster, model)
    if model.accounting:
        out["slurm/slurmdbd.conf"] = _render("slurmdbd.conf", cluster, model)
    return out
