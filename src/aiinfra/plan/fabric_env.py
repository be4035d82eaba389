"""The NCCL/UCX environment of a node group on the compute fabric: ONE function, every launcher.

:func:`nccl_env` is what the Slurm batch scripts export, what the PyTorchJob's containers get as
``env`` and what the nccl-tests acceptance jobs run with (serving may import it too). It reads
only the blueprint: the node type's rails (one HCA per rail, rail order), the fabric (SHARP,
topology file, bootstrap interface).

Settings and why:

- ``NCCL_IB_HCA=="=mlx5_0:1,..."``: the rails' HCAs, port 1 (ConnectX-7 single-port cards). The
  leading ``=`` asks for exact names: without it NCCL matches prefixes, and ``mlx5_1`` would also
  select ``mlx5_10``, ``mlx5_11`` ... (e.g. a storage HCA).
- ``UCX_NET_DEVICES``: the same ports in UCX's syntax (``mlx5_0:1,...``) for MPI/UCX launchers
  (nccl-tests under ``srun --mpi=pmix``), so UCX never picks the storage or Ethernet port.
- ``NCCL_NET_GDR_LEVEL=PXB``: GPUDirect RDMA when GPU and HCA share a PCIe switch. On HGX H100 each
  GPU sits behind the same PCIe switch as its rail's HCA, so every GPU/HCA pair uses GDR and no
  transfer is staged through a path across the CPU.
- ``NCCL_SOCKET_IFNAME``: the bootstrap interface (``fabric.socket_ifname``; default: everything
  but loopback and bridges). In a pod the interface is the CNI's ``eth0``.
- ``NCCL_IB_GID_INDEX`` is not set: the fabric is InfiniBand (the catalog's rates are IB rates),
  addressed by LID; a GID index only selects RoCE v2 addresses on Ethernet fabrics.
  ``NCCL_IB_QPS_PER_CONNECTION`` stays at NCCL's default (1): adaptive routing on the switches
  spreads one QP's traffic over the spines.
- ``fabric.sharp``: ``NCCL_COLLNET_ENABLE=1`` (CollNet through the SHARP plugin that NVIDIA's
  containers ship in HPC-X) and ``SHARP_COLL_ENABLE_SAT=1`` (SHARP streaming aggregation trees,
  needed for large messages on Quantum-2 NDR switches).
- ``fabric.nccl_topo_file``: ``NCCL_TOPO_FILE``.
- A group without rails gets ``NCCL_IB_DISABLE=1`` (NCCL over sockets; single-node jobs only).
"""

from __future__ import annotations

from aiinfra.spec.cluster import Cluster, Group

#: Port of every rail HCA (single-port ConnectX-7 cards).
HCA_PORT = 1
#: NCCL_SOCKET_IFNAME when the blueprint names none: any interface but loopback and bridges.
DEFAULT_SOCKET_IFNAME = "^lo,docker,virbr"
#: The pod network's interface inside a Kubernetes pod (Calico and Cilium both name it eth0).
POD_SOCKET_IFNAME = "eth0"
#: GPUDirect RDMA when GPU and HCA share a PCIe switch (HGX: each GPU next to its rail's HCA).
GDR_LEVEL = "PXB"


def rail_hcas(cluster: Cluster, group: Group) -> list[str]:
    """The group's compute HCAs in rail order (from the fabric model of its first host)."""
    if not group.hosts:
        return []
    return [port.hca for port in cluster.hosts[group.hosts[0]].rails]


def nccl_env(cluster: Cluster, group: Group, *, in_pod: bool = False) -> dict[str, str]:
    """NCCL (and UCX) environment for jobs on ``group``; ``in_pod``: inside a Kubernetes pod."""
    fabric = cluster.blueprint.fabric
    hcas = rail_hcas(cluster, group)
    env: dict[str, str] = {}
    if in_pod:
        env["NCCL_SOCKET_IFNAME"] = POD_SOCKET_IFNAME
    else:
        env["NCCL_SOCKET_IFNAME"] = (fabric.socket_ifname if fabric and fabric.socket_ifname
                                     else DEFAULT_SOCKET_IFNAME)
    if not hcas:
        env["NCCL_IB_DISABLE"] = "1"
        return dict(sorted(env.items()))
    ports = [f"{hca}:{HCA_PORT}" for hca in hcas]
    env["NCCL_IB_HCA"] = "=" + ",".join(ports)
    env["UCX_NET_DEVICES"] = ",".join(ports)
    env["NCCL_NET_GDR_LEVEL"] = GDR_LEVEL
    if fabric is not None and fabric.sharp:
        env["NCCL_COLLNET_ENABLE"] = "1"
        env["SHARP_COLL_ENABLE_SAT"] = "1"
    if fabric is not None and fabric.nccl_topo_file:
        env["NCCL_TOPO_FILE"] = fabric.nccl_topo_file
    return dict(sorted(env.items()))


def hcas_of_env(env: dict[str, str]) -> list[str]:
    """The HCA names an ``NCCL_IB_HCA`` value selects (inverse of :func:`nccl_env`, for checks)."""
    value = env.get("NCCL_IB_HCA", "").lstrip("=^")
    return [item.split(":")[0] for item in value.split(",") if item]
