"""The blueprint's shape: pydantic models of ``aiinfra:cluster``.

These models check types, units, allowed values and unknown keys. Relations between parts
(references, overlaps, topology fit) are checked in :mod:`aiinfra.checks`; derived facts
(hosts, addresses, fabric) are built in :mod:`aiinfra.spec.cluster`.
Every field has a description: ``aiinfra schema`` publishes them for editors.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from ClusterShell.NodeSet import NodeSet, NodeSetParseError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from aiinfra.catalog import defaults
from aiinfra.catalog.gpus import is_builtin_gpu
from aiinfra.catalog.models import is_builtin_model
from aiinfra.catalog.time_model import time_input_problem
from aiinfra.spec.units import parse_bytes, parse_bytes_per_s


class Strict(BaseModel):
    """Base: unknown keys are errors; values are not silently coerced between types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


MAX_HOSTS = 100_000  # per hostlist expression: past any cluster this toolkit plans (issue: 16k-32k nodes)
MAX_DEVICES = 64  # HCAs per node


def _expression_size(value: str) -> int:
    """An upper bound on the names a hostlist expression expands to, without expanding it."""
    total = 0
    for pattern in re.split(r",(?![^\[]*\])", value):
        count = 1
        for group in re.findall(r"\[([^\]]*)\]", pattern):
            n = 0
            for part in group.split(","):
                bounds = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*(?:/\s*(\d+))?\s*", part)
                if bounds:
                    low, high, step = int(bounds[1]), int(bounds[2]), int(bounds[3] or 1)
                    n += max(high - low, 0) // max(step, 1) + 1
                else:
                    n += 1
            count *= max(n, 1)
        total += count
    return total


def _nodeset(value: object, pattern: str, what: str, limit: int = MAX_HOSTS) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a hostlist expression such as 'gpu[001-512]'")
    if len(value) > 4096 or _expression_size(value) > limit:
        raise ValueError(f"'{value[:40]}' names more than {limit:,} {what.split(' (')[0]}s")
    try:
        nodes = NodeSet(value)
    except NodeSetParseError as exc:
        raise ValueError(f"'{value}' is not a valid hostlist expression ({exc})") from None
    if len(nodes) == 0:
        raise ValueError(f"'{value}' names no host")
    bad = [n for n in nodes if not re.fullmatch(pattern, n)]
    if bad:
        raise ValueError(f"'{bad[0]}' is not a valid {what}")
    return value


def _hostlist(value: object) -> str:
    return _nodeset(value, r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", "hostname (lower-case letters, digits and '-')")


def _devicelist(value: object) -> str:
    return _nodeset(value, r"[a-z0-9][a-z0-9_]*", "device name (e.g. mlx5_0)", MAX_DEVICES)


def _cidr(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an IPv4 CIDR such as '10.0.0.0/16'")
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"'{value}' is not an IPv4 network in CIDR form ({exc})") from None
    return str(net)


def _name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", value):
        raise ValueError(f"'{value}' is not a valid name: lower-case letters, digits and '-', at most 63")
    return value


Hostlist = Annotated[str, AfterValidator(_hostlist), WithJsonSchema({"type": "string", "description": "hostlist"})]
DeviceList = Annotated[str, AfterValidator(_devicelist), WithJsonSchema({"type": "string", "examples": ["mlx5_[0-7]"]})]
Cidr = Annotated[str, AfterValidator(_cidr), WithJsonSchema({"type": "string", "format": "ipv4-cidr"})]
Name = Annotated[str, AfterValidator(_name)]
Bytes = Annotated[
    int,
    BeforeValidator(parse_bytes),
    Field(gt=0, le=2**70),  # zero sizes are refused (omit the key instead); 1 ZiB is past any cluster
    PlainSerializer(lambda v: v),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9.]+\s*[KMGTP]?i?B$", "examples": ["2TiB", "100PB"]}),
]
BytesPerS = Annotated[
    float,
    BeforeValidator(parse_bytes_per_s),
    Field(gt=0, le=1e16),  # zero rates are refused; 10 PB/s is past any file system or link
    WithJsonSchema({"type": "string", "examples": ["1TB/s", "400Gb/s"]}),
]
Auto = Literal["auto"]
PosInt = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(gt=0, le=1)]


# ---------------------------------------------------------------- hardware


class GpuSpec(Strict):
    model: str = Field(
        description="GPU model from the catalog, e.g. h100-80gb (aiinfra size lists them), or a key of catalog.gpus"
    )
    count: PosInt = Field(description="GPUs per node")


class CpuSpec(Strict):
    sockets: PosInt = Field(description="CPU sockets per node")
    cores_per_socket: PosInt = Field(description="physical cores per socket")
    threads_per_core: Annotated[int, Field(ge=1, le=2)] = Field(1, description="1 (SMT off) or 2")


class RailSpec(Strict):
    hcas: DeviceList = Field(description="compute HCAs in rail order, e.g. 'mlx5_[0-7]': one rail each")
    rate: str = Field(defaults.DEFAULT_INTER_NODE_LINK, description="link rate per HCA port (catalog: hdr200, ndr200, ndr400, xdr800)")


class NodeType(Strict):
    gpu: GpuSpec | None = Field(None, description="GPUs of this node type; absent for CPU-only nodes")
    cpu: CpuSpec
    memory: Bytes = Field(description="RAM per node, with unit, e.g. 2TiB")
    rails: RailSpec | None = Field(None, description="compute fabric HCAs, one per rail (GPU nodes)")
    storage_hca: str | None = Field(None, description="HCA (or NIC) of the separate storage/management port")
    local_nvme: Bytes | None = Field(None, description="local NVMe scratch per node, e.g. 30TB")


# ---------------------------------------------------------------- networks and fabric


class Network(Strict):
    cidr: Cidr = Field(description="IPv4 network the plan allocates from")
    first_host: Annotated[int, Field(ge=1)] = Field(
        10, description="host index of the first allocated address (lower ones kept for gateways, VIPs)"
    )


class IpoibNetwork(Network):
    rail_prefix: Annotated[int, Field(ge=8, le=30)] = Field(
        description="prefix length of each rail's subnet; rail r takes the r-th subnet of cidr"
    )


class Networks(Strict):
    management: Network = Field(description="Ethernet management network (ansible_host)")
    bmc: Network = Field(description="baseboard management controllers (IPMI/Redfish)")
    storage: Network | None = Field(None, description="storage port network (IPoIB for LNet o2ib, NVMe-oF)")
    ipoib: IpoibNetwork | None = Field(None, description="IPoIB on the compute rails, one subnet per rail")


class Fabric(Strict):
    topology: Literal["rail-optimized-fat-tree", "fat-tree"] = Field(
        "rail-optimized-fat-tree",
        description="rail-optimized: rail r of every node in an SU meets on that SU's leaf r; spines per rail",
    )
    rate: str = Field(defaults.DEFAULT_INTER_NODE_LINK, description="fabric link rate (catalog)")
    su_nodes: PosInt = Field(32, description="GPU nodes per scalable unit (SU); one leaf switch per rail per SU")
    switch_radix: PosInt | None = Field(None, description="ports per switch; default from the link rate's catalog entry")
    levels: Literal[2, 3] = Field(
        2,
        description="switch levels: 2 = leaves and spines (at most switch_radix SUs); 3 = leaves, spine groups of "
        "sus_per_spine_group SUs, and a core layer above them (at most switch_radix spine groups)",
    )
    sus_per_spine_group: PosInt | None = Field(
        None,
        description="levels 3 only: consecutive SUs under one spine group (SU s is in group (s - 1) // this + 1); "
        "default switch_radix / 2, the most a spine group connects non-blocking",
    )
    scalable_units: dict[PosInt, Hostlist] | None = Field(
        None,
        description="the cabling: SU number -> its GPU nodes (hostlist), e.g. {1: 'gpu[001-032]'}; every GPU node "
        "in one SU (aiinfra fabric import-cabling writes it from a site's CSV). Absent: the SU follows the node's "
        "number, SU = (number - 1) // su_nodes + 1",
    )
    subnet_managers: Hostlist | None = Field(None, description="hosts that run opensm (primary first)")
    pkeys: list[str] = Field(default_factory=lambda: ["0x7fff"], description="InfiniBand partition keys")
    sharp: bool = Field(False, description="SHARP in-network reductions available (NCCL CollNet)")
    nccl_topo_file: str | None = Field(
        None, pattern=r"^/[^\s]*$",
        description="NCCL_TOPO_FILE: absolute path on the GPU nodes of an NCCL topology XML (mounted into "
        "Slurm containers); absent: NCCL detects the PCI/NVLink topology itself",
    )
    socket_ifname: str | None = Field(
        None,
        description="NCCL_SOCKET_IFNAME on the hosts (bootstrap and out-of-band traffic), e.g. 'bond0' or "
        "'^lo,docker'; default '^lo,docker,virbr' (any interface but loopback and bridges). Pods use eth0",
    )


# ---------------------------------------------------------------- nodes

NodeRole = Literal[
    "slurm_controller",
    "slurmdbd",
    "slurm_login",
    "k8s_control_plane",
    "subnet_manager",
    "lustre_client",
    "nvmeof_client",
    "gpfs_client",
]


class NodeState(Strict):
    """A node out of service, by name: what Slurm, Kubernetes, the acceptance jobs and Ansible see of it."""

    state: Literal["drain", "down", "decommissioned"] = Field(
        description="drain: finish running jobs, take no new ones (maintenance); down: out for repair, nothing "
        "runs there; decommissioned: gone from every rendered file, its name and addresses kept reserved",
    )
    reason: Annotated[str, Field(min_length=3, max_length=120, pattern=r'^[^"#\\\n\r\t]+$')] = Field(
        description="why, as Slurm shows it (sinfo -R) and the Kubernetes taint carries it, e.g. "
        "'XID 79 GPU3, RMA 4711' (no quotes or '#')",
    )


class NodeGroup(Strict):
    name: Name = Field(description="group name; also the Ansible group (with '_' for '-')")
    hosts: Hostlist = Field(description="hostlist expression, e.g. gpu[001-480]")
    type: str = Field(description="a key of node_types")
    scheduler: Literal["slurm", "kubernetes", "none"] = Field(
        "none", description="who runs workloads on these nodes: slurm (training), kubernetes (serving), none"
    )
    roles: list[NodeRole] = Field(default_factory=list, description="service roles these hosts carry")
    spares_per_su: Annotated[int, Field(ge=0, le=64)] = Field(
        0, description="hot spares held back in each scalable unit of the group: jobs and replicas are sized to "
        "leave them, so a requeued job restarts on a spare while a failed node is repaired",
    )
    address_index: Annotated[int, Field(ge=1, le=2**24)] | None = Field(
        None,
        description="host index, in every network, of the host numbered 1 of this group's name prefix (gpu001); "
        "a host's index is address_index + its number - 1, so nodes keep their addresses when others are added, "
        "removed or moved between groups. Default: name prefixes laid out in blueprint order, each reserving "
        "10^digits numbers",
    )


# ---------------------------------------------------------------- storage


class Lustre(Strict):
    fsname: Annotated[str, Field(pattern=r"^[a-z0-9]{1,8}$")] = Field(description="Lustre file system name")
    mgs_nids: list[str] = Field(min_length=1, description="MGS NIDs, e.g. 10.2.255.1@o2ib")
    mountpoint: str = Field("/lustre", description="client mount point")
    mount_options: list[str] = Field(default_factory=lambda: ["flock", "lazystatfs"], description="mount options")
    lnet: str = Field("o2ib0", description="LNet network of the clients")
    capacity: Bytes = Field(description="usable capacity, e.g. 100PB")
    bandwidth: BytesPerS = Field(description="aggregate write bandwidth, e.g. 1TB/s (checkpoint planning)")


class Gpfs(Strict):
    """An IBM Storage Scale (GPFS) file system. Its clients join the Storage Scale cluster as client nodes:
    an admin node of that cluster adds them (mmaddnode), each builds the portability layer and mounts."""

    cluster_name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,114}$",
        description="the Storage Scale cluster the clients join (mmlscluster shows it); the role checks it",
    )
    admin_node: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$",
        description="a node of that cluster that runs its administration commands (mmaddnode, mmchlicense) for "
        "new clients; reachable by Ansible over SSH, and itself able to reach the clients as root",
    )
    fsname: str = Field(pattern=r"^[A-Za-z0-9_]{1,63}$", description="file system device name (mmlsfs all)")
    mountpoint: str = Field(
        pattern=r"^/[^\s]*[^\s/]$",
        description="the file system's mount point as the storage cluster defines it (mmlsfs <fsname> -T)",
    )
    mount_options: list[str] = Field(default_factory=list, description="options of mmmount -o; empty: the file system's")
    capacity: Bytes = Field(description="usable capacity, e.g. 100PB")
    bandwidth: BytesPerS = Field(description="aggregate write bandwidth, e.g. 1TB/s (checkpoint planning)")


#: The node role of each parallel file system's clients (inventory group and host role of the same name).
PARALLEL_FS_CLIENT_ROLE: dict[str, NodeRole] = {"lustre": "lustre_client", "gpfs": "gpfs_client"}
#: How messages and rendered comments name each parallel file system.
PARALLEL_FS_TITLE = {"lustre": "Lustre", "gpfs": "GPFS"}


class NvmeofTarget(Strict):
    nqn: str = Field(description="subsystem NQN")
    address: str = Field(description="target address on the storage network")
    port: Annotated[int, Field(ge=1, le=65535)] = 4420


class Nvmeof(Strict):
    transport: Literal["rdma", "tcp"] = "rdma"
    targets: list[NvmeofTarget] = Field(min_length=1)


class Storage(Strict):
    lustre: Lustre | None = None
    nvmeof: Nvmeof | None = None
    gpfs: Gpfs | None = Field(None, description="IBM Storage Scale file system (parallel_fs: gpfs)")
    parallel_fs: Literal["lustre", "gpfs"] = Field(
        "lustre",
        description="the parallel file system the hosts mount and jobs, checkpoints and serving pods use: "
        "lustre (storage.lustre, role lustre_client) or gpfs (storage.gpfs, role gpfs_client)",
    )

    @property
    def parallel(self) -> Lustre | Gpfs | None:
        """The declaration of the chosen parallel file system, or None when it is not declared."""
        return self.gpfs if self.parallel_fs == "gpfs" else self.lustre

    @property
    def parallel_title(self) -> str:
        """The chosen parallel file system's name in messages and comments: Lustre or GPFS."""
        return PARALLEL_FS_TITLE[self.parallel_fs]

    @property
    def client_role(self) -> NodeRole:
        """The node role whose hosts mount the chosen parallel file system."""
        return PARALLEL_FS_CLIENT_ROLE[self.parallel_fs]


# ---------------------------------------------------------------- schedulers


class Partition(Strict):
    name: Name
    node_groups: list[str] = Field(min_length=1, description="node groups (scheduler: slurm) in this partition")
    default: bool = False
    max_time: str = Field("UNLIMITED", description="Slurm time limit, e.g. 14-00:00:00")


class Qos(Strict):
    name: Name
    priority: Annotated[int, Field(ge=0)] = 0
    max_gpus_per_user: PosInt | None = None
    preempt: list[str] = Field(default_factory=list, description="QoS names this one may preempt")


# Slurm's accounting keeps user and account names in lower case (sacctmgr(1), "user": names are forced
# to lowercase unless slurmdbd.conf sets PreserveCaseUser); '|' would break sacctmgr's parsable output.
SlurmUserName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")]
SlurmAccountName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Fairshare = Annotated[int, Field(ge=1, le=2**31 - 1)] | Literal["parent"]


class SlurmAccount(Strict):
    """An account of Slurm's accounting: its members' jobs are charged to it and may use its QoS.

    The slurm role creates it and its members' associations with sacctmgr; it never deletes any."""

    name: SlurmAccountName
    description: Annotated[str, Field(pattern=r"^[^|'\"\n]{1,200}$")] | None = Field(
        None, description="Description (Slurm stores it in lower case); default: the account name")
    parent: SlurmAccountName = Field("root", description="Parent account: root or another account of this list")
    fairshare: Fairshare | None = Field(
        None, description="Fairshare: this account's shares among its siblings, or 'parent'; default: Slurm's (1)")
    qos: list[str] = Field(default_factory=list, description="QoS its jobs may use (slurm.qos names or normal); "
                           "empty: inherited from the parent (root: normal)")
    default_qos: str | None = Field(None, description="DefaultQOS: the QoS of a job that names none; one of qos")
    users: list[SlurmUserName] = Field(default_factory=list, description="member users by login name")
    unix_group: SlurmUserName | None = Field(
        None, description="members are also the users of this group as the slurmdbd host sees it (getent group), "
        "read again at each hosts up")


class SlurmUser(Strict):
    """Settings of one user of slurm.accounts (their accounts come from the accounts' members)."""

    name: SlurmUserName
    default_account: SlurmAccountName | None = Field(
        None, description="DefaultAccount: the account of a job that names none; required for a user listed in "
        "several accounts; default: the user's only (or first listed) account")
    fairshare: Fairshare | None = Field(
        None, description="Fairshare of the user in each of its accounts; default: Slurm's (1)")
    admin_level: Literal["none", "operator", "admin"] | None = Field(
        None, description="AdminLevel: operator may manage jobs and accounting; admin also the configuration")


class SlurmInstall(Strict):
    """How the slurm role puts ``versions.slurm`` on the hosts (roles/slurm/README.md, "Installation")."""

    method: Literal["source", "packages"] = Field(
        "source",
        description="source: build versions.slurm once from its release tarball and copy the build to every Slurm "
        "host; packages: install the slurm-* packages of versions.slurm from the site's package repository",
    )
    source_url: Annotated[str, Field(pattern=r"^(https?|file)://\S+$")] | None = Field(
        None, description="release tarball on the site mirror (method: source); default: the catalog's upstream "
        "address for versions.slurm (aiinfra.catalog.versions.SLURM_SOURCES)",
    )
    source_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="SHA-256 of source_url's tarball; required with source_url for a release the catalog "
        "does not list",
    )
    prefix: Annotated[str, Field(pattern=r"^/[^\s]*[^/\s]$")] = Field(
        "/opt/slurm", description="method source: each release goes to <prefix>/<version>, <prefix>/current "
        "points at the one in use",
    )


class Slurm(Strict):
    cluster_name: Name
    install: SlurmInstall = Field(default_factory=SlurmInstall, description="where versions.slurm comes from")
    mail_prog: Annotated[str, Field(pattern=r"^/[^\s]+$")] | None = Field(
        "/usr/bin/mail",
        description="MailProg: the program slurmctld sends job mail with (sbatch --mail-type); the slurm role "
        "installs it on the controllers; null: no job mail (MailProg=/bin/true)",
    )
    mail_domain: Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")] | None = Field(
        None, description="MailDomain: appended to user names that have no @ (e.g. hpc.example.org)",
    )
    state_save_location: str = Field(description="StateSaveLocation on storage shared by the controllers")
    partitions: list[Partition] = Field(min_length=1)
    qos: list[Qos] = Field(default_factory=list)
    accounts: list[SlurmAccount] = Field(
        default_factory=list, description="accounts, their members and QoS grants, created in slurmdbd by the "
        "slurm role (accounting needs a slurmdbd host); users not named here are left alone")
    users: list[SlurmUser] = Field(default_factory=list, description="per-user settings of accounts' members")
    gres_autodetect: Literal["nvml", "off"] = Field(
        "nvml", description="nvml: slurmd detects GPUs; off: explicit File= lines with CPU and NIC affinity"
    )
    def_mem_per_gpu: Bytes | None = Field(None, description="DefMemPerGPU; default: node RAM share per GPU")
    gres_device_prefix: str = Field(
        "/dev/nvidia",
        pattern=r"^/[^\s]*$",
        description="device file prefix of the explicit gres.conf File= lines (gres_autodetect: off): GPU i is "
        "<prefix><i>; testbeds point it at fake character devices",
    )
    trust_node_config: bool = Field(
        False,
        description="SlurmdParameters=config_overrides: nodes reporting less hardware than slurm.conf are not "
        "drained (testbeds with emulated nodes only; keep false in production)",
    )
    health_check_interval_s: PosInt = Field(300, description="HealthCheckInterval: seconds between node health checks")


class Kubernetes(Strict):
    """The Kubernetes node groups' cluster and platform (docs/kubernetes.md)."""

    pod_cidr: Cidr = Field("10.244.0.0/16", description="pod network (kubeadm podSubnet, the CNI's IP pool)")
    service_cidr: Cidr = Field("10.96.0.0/12", description="Service ClusterIP range (kubeadm serviceSubnet)")
    cni: Literal["calico", "cilium"] = Field(
        "calico", description="pod network: calico (tigera-operator chart) or cilium; version in versions.charts"
    )
    api_vip: str | None = Field(
        None, description="control-plane endpoint (VIP or DNS name); required with more than one control-plane host"
    )
    api_port: Annotated[int, Field(ge=1, le=65535)] = Field(6443, description="API server port behind api_vip")
    gpu_driver: Literal["host", "operator"] = Field(
        "host",
        description="who installs the NVIDIA driver: host (Ansible, versions.nvidia_driver) or operator (the GPU "
        "Operator's driver container of versions.nvidia_driver)",
    )
    mig_strategy: Literal["none", "single", "mixed"] = Field(
        "none", description="GPU Operator MIG strategy: none (whole GPUs), single or mixed (MIG Manager on)"
    )
    rdma: Literal["shared", "sriov"] = Field(
        "shared",
        description="how pods get the InfiniBand HCAs: shared (RDMA shared device plugin, IPoIB networks) or "
        "sriov (one VF per rail through the SR-IOV device plugin, host-device networks)",
    )
    rdma_shared_max_pods: PosInt = Field(
        64, description="pods that may share one HCA (rdma: shared; the device plugin's rdmaHcaMax)"
    )
    lustre_volumes: Literal["static", "csi"] = Field(
        "static",
        description="how pods reach Lustre: static (PersistentVolumes on the hosts' Lustre mount) or csi "
        "(PersistentVolumes of lustre_csi_driver)",
    )
    lustre_csi_driver: str | None = Field(None, description="CSI driver name (lustre_volumes: csi)")
    queue_gpu_shares: dict[Literal["serving", "training"], Annotated[float, Field(ge=0, le=1, strict=False)]] = (
        Field(
            default_factory=lambda: {"serving": 1.0},
            description="Kueue: share of every GPU flavor each workload queue holds as nominal quota (whole nodes, "
            "rounded down); the queues share one cohort, so idle quota is borrowed",
        )
    )
    gpu_temp_alert_c: Annotated[int, Field(ge=50, le=110)] = Field(
        85, description="alert when a GPU stays above this temperature (degrees C) for 5 minutes"
    )
    prometheus_retention_days: PosInt = Field(15, description="Prometheus TSDB retention in days")
    gitops_repo: str | None = Field(
        None, description="git URL Argo CD pulls manifests/<env>/ from; none: no gitops/ tree is rendered"
    )
    gitops_revision: str = Field("main", description="branch, tag or commit Argo CD follows")


# ---------------------------------------------------------------- software versions (ONE place)


class Versions(Strict):
    os: Literal["ubuntu-22.04", "ubuntu-24.04", "rocky-9", "rhel-9"] = Field(description="OS of every node")
    kernel: str = Field(description="kernel release the DOCA/OFED and Lustre modules are built for")
    nvidia_driver: str = Field(description="NVIDIA datacenter driver, e.g. 570.133.20")
    cuda: str = Field(description="CUDA toolkit major.minor; the driver must meet its minimum")
    nccl: str = Field(description="NCCL (2.18 or newer)")
    doca_ofed: str = Field(description="DOCA-OFED (DOCA-Host) release")
    lustre_client: str | None = Field(None, description="Lustre client release")
    gpfs: str | None = Field(
        None, description="IBM Storage Scale release of the GPFS client packages, e.g. 5.2.3.1 (storage.parallel_fs: gpfs)"
    )
    slurm: str | None = Field(None, description="Slurm release; renderers adapt to it")
    kubernetes: str | None = Field(None, description="Kubernetes release; schemas are checked for its minor")
    containerd: str | None = Field(
        None, description="containerd package version the containerd role pins on Kubernetes hosts (apt version "
        "prefix); none: the OS release's package"
    )
    container_toolkit: str | None = Field(
        None, description="NVIDIA Container Toolkit (nvidia-container-toolkit, libnvidia-container) on GPU nodes, "
        "e.g. 1.17.5")
    enroot: str | None = Field(None, description="enroot on Slurm GPU and login nodes (srun --container-image), e.g. 3.5.0")
    pyxis: str | None = Field(None, description="pyxis, the Slurm SPANK plugin that runs enroot, e.g. 0.20.0")
    dcgm: str | None = Field(
        None, description="NVIDIA DCGM on GPU nodes, e.g. 4.2.3; versions.exporters.dcgm-exporter must be built for it")
    nccl_tests: str | None = Field(
        None, description="nccl-tests built with MPI on Slurm GPU nodes for the fabric acceptance jobs, e.g. 2.14.1 "
        "(aiinfra.catalog.versions.NCCL_TESTS_RELEASES)")
    megatron_lm: str | None = Field(
        None, description="Megatron-LM release the Megatron jobs run, checked out from the site's git mirror, e.g. "
        "core_v0.12.0 (aiinfra.catalog.versions.MEGATRON_LM_RELEASES)")
    charts: dict[str, str] = Field(default_factory=dict, description="Helm chart versions by chart name")
    images: dict[str, str] = Field(
        default_factory=dict, description="container images, pinned, by purpose; 'pause' is containerd's pod sandbox "
        "image on Kubernetes hosts (the one kubeadm of versions.kubernetes pulls)")
    exporters: dict[str, str] = Field(
        default_factory=dict,
        description="Prometheus exporters the host roles install outside Kubernetes, pinned: dcgm-exporter, "
        "node-exporter, slurm-exporter (aiinfra.catalog.monitoring)",
    )


# ---------------------------------------------------------------- models, training, serving


class ModelArchitecture(Strict):
    """A decoder-only transformer, as its checkpoint's config.json (Hugging Face names in brackets) says."""

    family: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="tokenizer family; a speculative draft must share it"
    )
    layers: Annotated[int, Field(ge=1, le=1024)] = Field(description="transformer layers [num_hidden_layers]")
    hidden: Annotated[int, Field(ge=1, le=1_048_576)] = Field(description="model width [hidden_size]")
    ffn_hidden: Annotated[int, Field(ge=1, le=4_194_304)] = Field(
        description="MLP width, per expert for MoE [intermediate_size]"
    )
    heads: Annotated[int, Field(ge=1, le=4096)] = Field(description="attention heads [num_attention_heads]")
    kv_heads: Annotated[int, Field(ge=1, le=4096)] = Field(
        description="key/value heads, grouped-query attention; equal to heads without it [num_key_value_heads]"
    )
    vocab: Annotated[int, Field(ge=1, le=16_777_216)] = Field(description="vocabulary [vocab_size]")
    experts: Annotated[int, Field(ge=1, le=4096)] = Field(1, description="MoE experts per layer (1: dense)")
    experts_per_token: Annotated[int, Field(ge=1, le=4096)] = Field(
        1, description="experts each token is routed to [num_experts_per_tok]"
    )
    tied_embeddings: bool = Field(
        False, description="output projection shares the input embedding [tie_word_embeddings]"
    )
    rope_theta: Annotated[int, Field(ge=1, le=10**12)] = Field(
        description="RoPE base, a whole number as Megatron-LM's --rotary-base takes it [rope_theta], e.g. 500000 "
        "(Llama 3), 1000000 (Qwen2.5); required: Megatron-LM's default (10000) is not most models'",
    )
    qkv_bias: bool = Field(False, description="biases on the Q, K and V projections only (Qwen2, Qwen2.5)")
    norm_epsilon: Annotated[float, Field(gt=0, le=0.01, strict=False)] = Field(
        description="epsilon of the normalisation layers [rms_norm_eps], e.g. 1e-5 (Llama 3), 1e-6 (Qwen2.5)",
    )
    norm: Literal["rmsnorm", "layernorm"] = Field("rmsnorm", description="normalisation layers")
    mlp: Literal["swiglu", "gelu"] = Field(
        "swiglu", description="swiglu: gated MLP (gate, up, down) [hidden_act: silu]; gelu: two matrices"
    )
    linear_bias: bool = Field(False, description="biases on every linear layer (GPT-2, GPT-3)")
    learned_positions: Annotated[int, Field(ge=0, le=16_777_216)] = Field(
        0, description="rows of a learned absolute position embedding [n_positions] (GPT-2: 1024); 0: rotary "
        "(rope_theta), and rope_theta is then unused",
    )
    max_context: Annotated[int, Field(ge=1, le=16_777_216)] | None = Field(
        None, description="longest context the model supports [max_position_embeddings]; longer jobs are warned"
    )

    @model_validator(mode="after")
    def _shapes(self) -> ModelArchitecture:
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} is not a multiple of kv_heads {self.kv_heads}")
        if self.experts_per_token > self.experts:
            raise ValueError(f"experts_per_token {self.experts_per_token} is more than experts {self.experts}")
        return self


class GpuType(Strict):
    """A GPU type a blueprint adds to the catalog (figures from its datasheet, dense tensor rates)."""

    product: str = Field(
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$",
        description="product name as the driver reports it (nvidia-smi, GPU Feature Discovery's "
        "nvidia.com/gpu.product), spaces as '-', e.g. NVIDIA-B200; also a Kubernetes label value",
    )
    vendor: Literal["nvidia", "amd"] = Field(
        "nvidia", description="nvidia, or amd (declared for planning; node types cannot use it: the rendered "
        "stack is NVIDIA's)",
    )
    memory: Bytes = Field(description="device memory as the device reports it, e.g. 180GiB")
    memory_bandwidth: BytesPerS = Field(description="HBM bandwidth, e.g. 8TB/s")
    bf16_dense_tflops: Annotated[float, Field(gt=0, le=100_000, strict=False)] = Field(
        description="BF16 dense tensor TFLOP/s (without sparsity)"
    )
    fp8_dense_tflops: Annotated[float, Field(gt=0, le=200_000, strict=False)] | None = Field(
        None, description="FP8 dense tensor TFLOP/s; absent: no FP8 tensor cores"
    )
    int8_dense_tops: Annotated[float, Field(gt=0, le=200_000, strict=False)] = Field(
        description="INT8 dense tensor TOP/s"
    )
    tdp_w: Annotated[int, Field(ge=1, le=10_000)] = Field(description="board power (TDP) in W")
    nvlink_bandwidth: BytesPerS = Field(
        description="NVLink (or Infinity Fabric) bandwidth per GPU, both directions together as datasheets "
        "give it, e.g. 1.8TB/s"
    )
    nvlink_domain_gpus: Annotated[int, Field(ge=1, le=1024)] = Field(
        description="GPUs in one NVLink domain: 8 on an HGX board (one node), 72 in a GB200 NVL72 rack "
        "(18 nodes of 4); a domain larger than a node spans consecutive nodes and tensor parallelism may too",
    )
    compute_capability: Annotated[str, Field(pattern=r"^[0-9]{1,2}\.[0-9]$")] | None = Field(
        None, description="CUDA compute capability, e.g. '10.0' (required for vendor nvidia)"
    )

    @model_validator(mode="after")
    def _nvidia(self) -> GpuType:
        if self.vendor == "nvidia" and self.compute_capability is None:
            raise ValueError("an NVIDIA GPU type needs its compute_capability, e.g. '10.0'")
        return self


def _not_builtin(is_builtin, what: str):
    def check(table: dict) -> dict:
        taken = [name for name in table if is_builtin(name)]
        if taken:
            raise ValueError(f"'{taken[0]}' is a built-in {what}: the blueprint adds {what}s, it cannot redefine "
                             "one; give it a name of its own")
        return table
    return AfterValidator(check)


CatalogName = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")]


class Catalog(Strict):
    """GPU types and model architectures this blueprint adds to the built-in catalog (docs/planner.md)."""

    gpus: Annotated[dict[CatalogName, GpuType], _not_builtin(is_builtin_gpu, "GPU type")] = Field(
        default_factory=dict, description="GPU types by name; node_types.<type>.gpu.model may name them",
    )
    models: Annotated[dict[CatalogName, ModelArchitecture], _not_builtin(is_builtin_model, "model")] = Field(
        default_factory=dict, description="model architectures by name; training, serving and drafts may name them",
    )


Recompute = Literal["none", "selective", "full"]


class TrainingJob(Strict):
    name: Name
    model: str = Field(description="catalog model (e.g. llama3-70b) or a key of catalog.models")
    node_group: str = Field(description="node group to run on; its scheduler runs the job")
    nodes: PosInt
    framework: Literal["megatron", "deepspeed"] = "megatron"
    tp: PosInt | Auto = "auto"
    pp: PosInt | Auto = "auto"
    dp: PosInt | Auto = "auto"
    cp: PosInt | Auto = 1
    virtual_pipeline_stages: PosInt | Auto = 1
    seq_len: PosInt = 8192
    micro_batch: PosInt = 1
    global_batch: PosInt | None = Field(None, description="sequences per step (or global_batch_tokens)")
    global_batch_tokens: PosInt | None = Field(None, description="tokens per step")
    precision: Literal["bf16", "fp8"] = "bf16"
    zero_stage: Annotated[int, Field(ge=0, le=3)] = 1
    fsdp: bool = False
    recompute: Recompute = "selective"
    sequence_parallel: bool = True
    distributed_optimizer: bool = True
    tokens: Annotated[float, Field(gt=0, strict=False)] = Field(description="token budget, e.g. 15.0e12")
    mfu: Annotated[float, Field(gt=0, lt=1, strict=False)] | None = Field(
        None, description="end-to-end model FLOPs utilisation to plan for: the planner solves its compute "
        "efficiencies to reach it, communication and bubble stay modelled; default: the planner's estimate"
    )
    planner: dict[str, Annotated[float, Field(strict=False)]] = Field(
        default_factory=dict,
        description="step-time model inputs set for this job, one at a time (e.g. gemm_efficiency_bf16: 0.7, "
        "overlap: 0.5); names and bounds in docs/planner.md; the others keep their calibrated defaults",
    )

    @field_validator("planner")
    @classmethod
    def _known_time_inputs(cls, value: dict[str, float]) -> dict[str, float]:
        for name, v in value.items():
            why = time_input_problem(name, v)
            if why:
                raise ValueError(why)
        return value
    image: str | None = Field(None, description="key of versions.images; default by framework")
    checkpoint_dir: str | None = Field(
        None, pattern=r"^/[^\s]*$",
        description="absolute checkpoint directory; default <lustre mountpoint>/checkpoints/<env>/<job name>",
    )
    checkpoint_interval_steps: PosInt | Auto = Field(
        "auto",
        description="steps between checkpoints; auto: the planner's Young/Daly interval (job GPUs, Lustre "
        "write bandwidth) divided by the planned step time",
    )
    checkpoint_keep: PosInt = Field(3, description="checkpoints kept; older complete ones are deleted while the job runs")
    launcher: Literal["srun", "torchrun"] = Field(
        "srun",
        description="Slurm: srun starts one task per GPU (Slurm sets the ranks), or one torchrun per node; "
        "Kubernetes always runs torchrun per pod",
    )
    entrypoint: str | None = Field(
        None,
        description="training program in the image; default: pretrain_gpt.py of the versions.megatron_lm "
        "checkout (roles/megatron_lm), or train.py in the job's directory on Lustre for DeepSpeed",
    )
    data_path: str | None = Field(
        None, description="dataset (Megatron: --data-path prefix); default <lustre>/datasets/<model>/text_document",
    )
    tokenizer: str | None = Field(
        None, description="Hugging Face tokenizer name or path; default <lustre>/models/<model>/tokenizer",
    )
    offload: Literal["none", "cpu"] = Field(
        "none",
        description="DeepSpeed ZeRO offload to CPU memory: optimizer states from stage 1, and parameters at "
        "stage 3 (the planner counts the GPU memory it saves and the host memory it takes, as DeepSpeed's "
        "estimators do)",
    )
    extra_args: list[str] = Field(
        default_factory=list,
        description="program arguments appended verbatim (optimizer, learning-rate schedule, data mixture); "
        "they may not repeat an argument aiinfra renders from the plan",
    )


class Speculative(Strict):
    draft_model: str = Field(
        description="catalog model (or a key of catalog.models) of the draft; same tokenizer family"
    )
    num_tokens: Annotated[int, Field(ge=1, le=16)] = Field(5, description="tokens the draft proposes per step")
    acceptance_rate: Annotated[float, Field(gt=0, lt=1, strict=False)] = Field(
        0.7, description="expected per-token acceptance rate of the draft"
    )
    weights_path: str | None = Field(
        None,
        pattern=r"^/[^\s]*$",
        description="checkpoint directory of the draft on Lustre (absolute path below storage.lustre.mountpoint); "
        "default <mountpoint>/models/<draft_model>",
    )


class ServingDeployment(Strict):
    name: Name
    model: str
    node_group: str
    engine: Literal["vllm", "tensorrt-llm"] = "vllm"
    quantization: Literal["none", "fp8", "int8", "awq-int4", "gptq-int4", "nf4"] = "none"
    dtype: Literal["bf16", "fp16"] = "bf16"
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    max_model_len: PosInt = 8192
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1, strict=False)] = 0.9
    tp: PosInt | Auto = "auto"
    pp: PosInt | Auto = 1
    replicas: PosInt | Auto = "auto"
    target_tokens_per_s: Annotated[float, Field(gt=0, strict=False)] | None = None
    speculative: Speculative | None = None
    image: str | None = Field(None, description="key of versions.images; default by engine")
    served_model_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="model name clients ask for (OpenAI 'model' field); default the deployment name",
    )
    weights_path: str | None = Field(
        None,
        pattern=r"^/[^\s]*$",
        description="checkpoint directory (Hugging Face layout) on Lustre, an absolute path below "
        "storage.lustre.mountpoint; default <mountpoint>/models/<model>",
    )
    weights_source: Literal["lustre", "local-nvme"] = Field(
        "lustre",
        description="lustre: the server reads the checkpoint from the read-only Lustre claim; local-nvme: an init "
        "container copies it to node-local NVMe (emptyDir) and checks it against its SHA256SUMS first",
    )
    weights_manifest_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None,
        description="sha256 of the checkpoint's SHA256SUMS file (required with weights_source: local-nvme): the "
        "init container trusts the manifest only if its hash matches, then checks every file against it",
    )
    prefix_caching: bool = Field(True, description="automatic prefix caching of the KV cache (vLLM)")
    chunked_prefill: bool = Field(True, description="chunked prefill: long prompts are split and batched with decodes")
    distributed_backend: Literal["mp", "ray"] = Field(
        "mp",
        description="runtime of a replica spread over several nodes (TP x PP > GPUs per node): mp (vLLM's own "
        "multiprocessing, --nnodes/--node-rank, recent vLLM only) or ray (a Ray cluster per LeaderWorkerSet group)",
    )
    autoscaling: Literal["none", "keda", "hpa"] = Field(
        "none",
        description="scale replicas on vLLM's metrics (waiting requests, KV-cache usage): keda (ScaledObject with "
        "Prometheus triggers), hpa (autoscaling/v2 on custom metrics served by prometheus-adapter) or none",
    )
    min_replicas: PosInt | None = Field(None, description="autoscaling floor; default the planned replicas")
    max_replicas: PosInt | None = Field(
        None, description="autoscaling ceiling; default the planned replicas (all of them count against the node group)"
    )
    scale_waiting_requests: PosInt = Field(
        8, description="autoscaling target: requests waiting in the queue per replica (vllm:num_requests_waiting)"
    )
    scale_kv_cache_usage: Annotated[float, Field(gt=0, lt=1, strict=False)] = Field(
        0.8, description="autoscaling target: mean KV-cache usage of the replicas (fraction)"
    )
    ttft_p95_slo_s: Annotated[float, Field(gt=0, strict=False)] = Field(
        2.0, description="service level objective: 95th percentile time to first token in seconds (alert rule)"
    )
    gateway_namespace: Name | None = Field(
        None,
        description="the only namespace whose pods may reach the API (NetworkPolicy); none: no client ingress "
        "(Prometheus in 'monitoring' may still scrape /metrics)",
    )
    egress_cidrs: list[Cidr] = Field(
        default_factory=list, description="networks the server may reach besides DNS (default: none)"
    )
    api_key_secret: Name | None = Field(
        None,
        description="Secret (key 'api-key') the API key comes from, created outside aiinfra (Pulumi secret, "
        "External Secrets); default <name>-api-key. The key itself never appears in manifests",
    )
    extra_args: list[str] = Field(
        default_factory=list,
        description="server arguments appended verbatim (vllm serve, trtllm-serve); each must be a flag of the "
        "pinned engine version (aiinfra.catalog.engines) and may not repeat one aiinfra renders from the plan",
    )
    gateway_auth: bool = Field(
        False,
        description="the gateway in gateway_namespace authenticates every client before it forwards; required "
        "for an engine without an API-key option (TensorRT-LLM), else serving-no-auth",
    )
    checkpoint_quantization: str | None = Field(
        None,
        description="quantization_config.quant_method of a pre-quantized checkpoint's config.json (fp8, "
        "fbgemm_fp8, modelopt, compressed-tensors, awq, gptq, bitsandbytes): vLLM reads it and gets no --quantization; "
        "default: awq for awq-int4, gptq for gptq-int4, compressed-tensors for int8, none (16-bit weights, which vLLM "
        "quantizes while loading for fp8 and nf4) otherwise",
    )
    calibration_dataset: str | None = Field(
        None,
        pattern=r"^/[^\s]*$",
        description="TensorRT-LLM: a Hugging Face dataset directory on Lustre (train split, 'text' column) the "
        "engine build calibrates on (quantize.py --calib_dataset); required when it quantizes (the Job is offline)",
    )


# ---------------------------------------------------------------- claims to check


class TrainingDaysClaim(Strict):
    """"<model> trains on <nodes> nodes in <days> days": the planner says whether it holds."""

    kind: Literal["training-days"]
    model: str = Field(description="catalog model")
    node_group: str = Field(description="node group whose GPU model and GPUs per node are meant")
    nodes: PosInt
    days: Annotated[float, Field(gt=0, strict=False)]
    tokens: Annotated[float, Field(gt=0, strict=False)] = Field(15e12, description="token budget of the claim")


class QuantizedFitsClaim(Strict):
    """"<model> in <quantization> is <weights> and runs on one GPU": checked against the planner."""

    kind: Literal["fits-one-gpu"]
    model: str
    quantization: Literal["fp8", "int8", "awq-int4", "gptq-int4"]
    node_group: str = Field(description="node group whose GPU is meant")
    weights: Bytes = Field(description="claimed weight size, e.g. 35GB")
    max_model_len: PosInt = 8192


Claim = Annotated[TrainingDaysClaim | QuantizedFitsClaim, Field(discriminator="kind")]


# ---------------------------------------------------------------- site


class Site(Strict):
    power_budget: Annotated[float, Field(gt=0, strict=False)] = Field(description="site IT power budget in kW")
    pue: Annotated[float, Field(ge=1, le=3, strict=False)] = Field(
        defaults.DEFAULT_PUE, description="power usage effectiveness"
    )
    node_overhead_w: Annotated[int, Field(ge=0)] = Field(
        defaults.DEFAULT_NODE_OVERHEAD_W, description="non-GPU power per GPU node (CPUs, NICs, fans, NVSwitch) in W"
    )
    gpu_annual_failure_rate: Annotated[float, Field(gt=0, lt=1, strict=False)] = Field(
        defaults.DEFAULT_GPU_ANNUAL_FAILURE_RATE, description="fraction of GPUs failing per year (checkpoint planning)"
    )
    node_non_gpu_annual_failure_rate: Annotated[float, Field(ge=0, le=10, strict=False)] = Field(
        defaults.DEFAULT_NODE_NON_GPU_ANNUAL_FAILURE_RATE,
        description="failures per GPU node and year from parts other than its GPUs (CPUs, memory, NICs, power "
        "supplies), added to GPUs per node x gpu_annual_failure_rate; 0: a node fails when one of its GPUs does",
    )
    node_repair_days: Annotated[float, Field(gt=0, le=365, strict=False)] = Field(
        defaults.DEFAULT_NODE_REPAIR_DAYS,
        description="mean time to repair a failed GPU node, days, from going down to back in service (spares planning)",
    )
    spare_target_availability: Annotated[float, Field(gt=0, lt=1, strict=False)] = Field(
        defaults.DEFAULT_SPARE_TARGET_AVAILABILITY,
        description="fraction of the time the spares of each scalable unit must cover all its nodes that are down; "
        "`aiinfra plan` recommends spares_per_su for it",
    )
    job_interruptions_per_gpu_year: Annotated[float, Field(gt=0, le=100, strict=False)] = Field(
        defaults.DEFAULT_INTERRUPTIONS_PER_GPU_YEAR,
        description="unexpected job interruptions per GPU and year from all causes (GPUs, hosts, network, "
        "storage, software), the rate checkpoints are planned against; default: the Llama 3 405B run's, 419 in 54 "
        "days on 16,384 H100 (aiinfra.catalog.defaults)",
    )
    planned_interruptions_per_gpu_year: Annotated[float, Field(ge=0, le=100, strict=False)] = Field(
        defaults.DEFAULT_PLANNED_PER_GPU_YEAR,
        description="planned stops (maintenance) per GPU and year; default: the same run's, 47 in 54 days",
    )
    job_requeue_minutes: Annotated[float, Field(ge=0, le=1440, strict=False)] = Field(
        0.0, description="minutes a stopped job waits in the queue before it restarts, beside job_restart_minutes",
    )
    job_restart_minutes: Annotated[float, Field(ge=0, le=1440, strict=False)] = Field(
        defaults.DEFAULT_JOB_RESTART_MINUTES,
        description="minutes from a failure to the job running again from its last checkpoint: requeue, "
        "scheduling, loading the checkpoint (checkpoint interval and goodput planning)",
    )


# ---------------------------------------------------------------- rolling changes of the host layer


class Rollout(Strict):
    """How playbooks/rolling.yml changes drivers, OFED or Lustre: drained batches, verified before resume."""

    first_batch: PosInt = Field(
        defaults.DEFAULT_ROLLOUT_FIRST_BATCH, description="nodes in the first (canary) batch"
    )
    batch_size: PosInt = Field(
        defaults.DEFAULT_ROLLOUT_BATCH_SIZE, description="nodes per batch after the first (Ansible serial), e.g. one SU"
    )
    max_fail_percentage: Annotated[int, Field(ge=0, le=100)] = Field(
        defaults.DEFAULT_ROLLOUT_MAX_FAIL_PERCENTAGE,
        description="percent of a batch's nodes that may fail before the rollout stops (0: stop at the first)",
    )
    drain_timeout_s: PosInt = Field(
        defaults.DEFAULT_ROLLOUT_DRAIN_TIMEOUT_S,
        description="seconds to wait for a drained node's jobs (Slurm) or pods (Kubernetes) to finish",
    )


# ---------------------------------------------------------------- air-gapped sites: the mirror


def _registry(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*", value):
        raise ValueError(f"'{value}' is not a registry: host[:port][/path], lower case, without a scheme "
                         "(e.g. registry.site.local:5000)")
    return value


def _url(*schemes: str):
    def check(value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9+.-]*://[^\s/]+(/[^\s]*)?", value) or value.split("://")[0] not in schemes:
            raise ValueError(f"'{value}' is not a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return value.rstrip("/")
    return AfterValidator(check)


class Mirror(Strict):
    """Where an air-gapped site keeps its copies (docs/air-gapped.md, ``aiinfra artifacts``): every
    rendered image, chart and git source names the mirror instead of its upstream."""

    registry: Annotated[str, AfterValidator(_registry)] | None = Field(
        None, description="container registry holding every image under its upstream name: "
        "nvcr.io/nvidia/pytorch:25.04-py3 -> <registry>/nvcr.io/nvidia/pytorch:25.04-py3",
    )
    helm: Annotated[str, _url("oci", "https", "http")] | None = Field(
        None, description="Helm repository (https://) or OCI registry path (oci://) holding every chart by its name",
    )
    git: Annotated[str, _url("https", "http", "ssh")] | None = Field(
        None, description="git server holding every upstream git source under its host and path: "
        "https://github.com/kubeflow/trainer.git -> <git>/github.com/kubeflow/trainer.git",
    )


# ---------------------------------------------------------------- the blueprint


class Blueprint(Strict):
    """The whole environment: ``config: aiinfra:cluster:`` in stacks/Pulumi.<env>.yaml."""

    name: Name = Field(description="environment name, e.g. nacc-prod")
    description: str = Field("", description="one line about the environment")
    silence: list[str] = Field(default_factory=list, description="warning ids to silence (errors cannot be)")
    site: Site | None = Field(None, description="power and reliability inputs of the planner")
    versions: Versions = Field(description="every pinned version, in one place")
    mirror: Mirror | None = Field(
        None, description="air-gapped site: registry, Helm repository and git server that rendered files pull from"
    )
    node_types: dict[str, NodeType] = Field(min_length=1, description="hardware of each kind of node, by name")
    networks: Networks = Field(description="CIDRs the address plan allocates from")
    fabric: Fabric | None = Field(None, description="the InfiniBand compute fabric (required with rails)")
    node_groups: list[NodeGroup] = Field(min_length=1, description="hosts by hostlist, type, scheduler, roles")
    nodes: Annotated[dict[Hostlist, NodeState], BeforeValidator(lambda v: {} if v is None else v)] = Field(
        default_factory=dict,
        description="day-2 state of nodes out of service, by hostlist, e.g. {gpu200: {state: down, reason: ...}}; "
        "every other node is in service; an empty nodes: is fine. Git history is the audit trail",
    )
    storage: Storage = Field(default_factory=Storage, description="the parallel file system (Lustre or GPFS) and NVMe-oF")
    slurm: Slurm | None = Field(None, description="required when a node group has scheduler: slurm")
    kubernetes: Kubernetes | None = Field(None, description="cluster networking of the Kubernetes node groups")
    catalog: Catalog = Field(
        default_factory=Catalog, description="GPU types and model architectures added to the built-in catalog"
    )
    training: list[TrainingJob] = Field(default_factory=list)
    serving: list[ServingDeployment] = Field(default_factory=list)
    claims: list[Claim] = Field(
        default_factory=list, description="statements about this cluster that `aiinfra plan` checks (e.g. a procurement requirement's)"
    )
    rollout: Rollout | None = Field(
        None, description="batches of rolling driver/OFED/Lustre changes (playbooks/rolling.yml); default 1, then 32"
    )
