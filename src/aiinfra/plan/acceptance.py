"""Fabric acceptance: what nccl-tests must show before a node joins a partition, and the gate.

Three collectives (``all_reduce_perf``, ``all_gather_perf``, ``alltoall_perf``) run at three scopes:
per node (NVLink/NVSwitch only), per scalable unit (SU: the leaf switches of every rail) and across
the partition (through the spines). :func:`expected_busbw_gb_s` turns the catalog into the bus
bandwidth a healthy fabric reaches; :mod:`aiinfra.deploy.acceptance` reads nccl-tests' output (and NCCL's
``NCCL_DEBUG=INFO`` lines naming the HCAs in use) and says pass or fail per node.

Expected bus bandwidth (busbw, nccl-tests' doc/PERFORMANCE.md: busbw is normalised so that it is
comparable to the hardware's peak bandwidth whatever the number of ranks):

- inside a node: the GPU's NVLink bandwidth in one direction (H100: 900 GB/s bidirectional ->
  450 GB/s); every rank's traffic crosses its own NVLink ports.
- across nodes, all-reduce and all-gather: the node's injection bandwidth, all rails together in
  one direction (8 x NDR400 = 8 x 400 Gb/s = 400 GB/s): NCCL runs one ring/tree channel per rail,
  so the rails together carry the bus traffic of the node.
- across nodes, all-to-all: every rank sends (n - g)/n of its data off the node and the g ranks of
  a node share its rails, so busbw <= injection / g x (n - 1)/(n - g) (about 50 GB/s per GPU).

The pass mark is that peak times :data:`EFFICIENCY`. ASSUMPTION: 0.8, the planner's
``LINK_EFFICIENCY`` (aiinfra.plan.training: "achievable fraction of a link's one-direction peak
for NCCL collectives"): the gate checks that the fabric delivers what every training plan assumed.
A rail that is down does not always cost 20 % (NCCL moves its channels to the other rails), so the
gate also checks that NCCL found every rail HCA of the node (``NET/IB : Using [0]mlx5_0:1/IB ...``).
"""

from __future__ import annotations

from aiinfra.catalog.links import link_rate
from aiinfra.plan.fabric_env import rail_hcas
from aiinfra.plan.training import LINK_EFFICIENCY
from aiinfra.spec.cluster import Cluster, Group

TESTS = ("all_reduce_perf", "all_gather_perf", "alltoall_perf")
SCOPES = ("node", "su", "partition")
#: Fraction of the peak bus bandwidth a healthy fabric reaches (see the module docstring).
EFFICIENCY = LINK_EFFICIENCY
#: busbw is judged at the largest message of a run, which must be at least this big (1 GiB):
#: smaller messages measure latency, not bandwidth.
GATE_MIN_BYTES = 2**30
#: nccl-tests arguments of the acceptance jobs: 8 B to 16 GiB, doubling, one GPU per process,
#: data checked (-c 1), 20 timed iterations after 5 warm-up ones.
NCCL_TESTS_ARGS = ("-b", "8", "-e", "16G", "-f", "2", "-g", "1", "-c", "1", "-n", "20", "-w", "5")


# ---------------------------------------------------------------- expectations


def node_injection_gb_s(cluster: Cluster, group: Group) -> float:
    """GB/s into the fabric per node, one direction, all rails together."""
    rails = group.node_type.rails
    if rails is None:
        return 0.0
    return len(rail_hcas(cluster, group)) * link_rate(rails.rate).gbytes_per_s


def expected_busbw_gb_s(cluster: Cluster, group: Group, test: str, nodes: int) -> float:
    """Peak bus bandwidth (GB/s) of ``test`` over ``nodes`` nodes of ``group`` (before EFFICIENCY)."""
    gpu = group.gpu
    if gpu is None:
        raise ValueError(f"group '{group.name}' has no GPUs")
    nvlink = gpu.nvlink_unidirectional_gb_s
    if nodes <= 1:
        return nvlink
    inject = node_injection_gb_s(cluster, group)
    if test == "alltoall_perf":
        g = group.gpus_per_node
        n = nodes * g
        return min(nvlink, inject / g * (n - 1) / (n - g))
    return min(nvlink, inject)


def threshold_gb_s(cluster: Cluster, group: Group, test: str, nodes: int) -> float:
    return round(expected_busbw_gb_s(cluster, group, test, nodes) * EFFICIENCY, 2)


def thresholds_table(cluster: Cluster, group: Group) -> dict:
    """The pass marks of a group at each scope (rendered beside the acceptance jobs, for review)."""
    su_nodes = cluster.fabric.su_nodes if cluster.fabric else 1
    in_service = len(group.in_service)  # drained and down nodes are not tested
    scopes = {"node": 1, "su": min(su_nodes, in_service), "partition": in_service}
    return {
        "group": group.name,
        "efficiency": EFFICIENCY,
        "gate_min_bytes": GATE_MIN_BYTES,
        "expected_hcas": rail_hcas(cluster, group),
        "min_busbw_gb_s": {
            scope: {"nodes": n, **{t: threshold_gb_s(cluster, group, t, n) for t in TESTS}}
            for scope, n in scopes.items()
        },
    }
