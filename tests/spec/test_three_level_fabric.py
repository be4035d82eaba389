"""A three-level fat-tree (SU leaves, spine groups, core) at 32,768 nodes: the tree topology.conf and
Kueue describe, the cabling of the core, and what validate refuses at that size."""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from ClusterShell.NodeSet import NodeSet

from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data, build_file
from aiinfra.render import render_all
from aiinfra.render.cabling import cables

FIXTURE = Path(__file__).parents[1] / "fixtures" / "scale" / "Pulumi.superpod-32k.yaml"
PROD = Path(__file__).parents[2] / "stacks" / "Pulumi.prod.yaml"
# NVIDIA Quantum-2 QM9700 (the NDR switch of DGX H100 SuperPODs): 64 ports of 400 Gb/s. Half of a
# spine's ports go down, so one spine group holds 32 SUs; a core switch meets up to 64 spine groups.
NDR_PORTS = 64
SU_NODES = 32  # the fixture's fabric.su_nodes
SLURM_NODES, K8S_NODES = 30720, 2048  # the fixture's gpu-train gpu[00001-30720] and gpu-serve gpu[30721-32768]


@pytest.fixture(scope="module")
def superpod():
    built = build_file(FIXTURE)
    return built, render_all(built.cluster, built.plan, only=["slurm", "k8s-hosts", "k8s-platform"])


def switch_lines(topology_conf: str) -> dict[str, dict[str, list[str]]]:
    """SwitchName -> {"Nodes": [...], "Switches": [...]} (expanded), as Slurm reads topology.conf."""
    out: dict[str, dict[str, list[str]]] = {}
    for line in topology_conf.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = dict(item.split("=", 1) for item in line.split())
        name = fields.pop("SwitchName")
        assert name not in out, f"{name} declared twice"
        out[name] = {key: list(NodeSet(value)) for key, value in fields.items()}
    return out


def test_topology_conf_is_leaves_under_spine_groups_under_one_core(superpod):
    _built, files = superpod
    switches = switch_lines(files["slurm/topology.conf"])
    leaves = {n: s["Nodes"] for n, s in switches.items() if "Nodes" in s}
    groups = {n: s["Switches"] for n, s in switches.items() if "Switches" in s and n != "core"}
    assert set(switches) == set(leaves) | set(groups) | {"core"}
    # every Slurm node under exactly one SU switch, SUs of 32 nodes
    nodes = [h for members in leaves.values() for h in members]
    assert len(nodes) == len(set(nodes)) == SLURM_NODES
    assert set(nodes) == set(NodeSet("gpu[00001-30720]"))
    assert {len(members) for members in leaves.values()} == {SU_NODES}
    assert len(leaves) == SLURM_NODES // SU_NODES
    # every SU switch under exactly one spine group, full groups of radix/2 SUs
    under = Counter(su for members in groups.values() for su in members)
    assert set(under) == set(leaves) and set(under.values()) == {1}
    assert {len(members) for members in groups.values()} == {NDR_PORTS // 2}
    # every spine group under the core, which is the single top of the tree
    assert sorted(switches["core"]["Switches"]) == sorted(groups)
    assert len(groups) == SLURM_NODES // SU_NODES // (NDR_PORTS // 2)
    # consecutive SUs share a spine group: gpu00001 and gpu01024 are in sg01, gpu01025 is not
    group_of = {su: g for g, members in groups.items() for su in members}
    su_of = {h: su for su, members in leaves.items() for h in members}
    assert group_of[su_of["gpu00001"]] == group_of[su_of["gpu01024"]] != group_of[su_of["gpu01025"]]


def test_kueue_topology_and_node_labels_carry_the_spine_group(superpod):
    built, files = superpod
    topology = next(d for d in yaml.safe_load_all(files["k8s/kueue/topology.yaml"]) if d)
    assert [lv["nodeLabel"] for lv in topology["spec"]["levels"]] == [
        "aiinfra.io/spine-group", "aiinfra.io/su", "aiinfra.io/nvlink-domain", "kubernetes.io/hostname"]
    labels = {}
    for line in files["k8s-hosts/nodes.yaml"].splitlines():
        m = re.match(r"(gpu\d+): (\{.*\})$", line)
        if m:
            labels[m.group(1)] = yaml.safe_load(m.group(2))["labels"]
    assert len(labels) == K8S_NODES
    by_group = Counter(lb["aiinfra.io/spine-group"] for lb in labels.values())
    # the 2,048 Kubernetes nodes fill spine groups 31 and 32 (1,024 nodes each)
    assert by_group == {"sg31": 1024, "sg32": 1024}
    sus_of_group: dict[str, set[str]] = {}
    for lb in labels.values():
        sus_of_group.setdefault(lb["aiinfra.io/spine-group"], set()).add(lb["aiinfra.io/su"])
    assert all(len(sus) == NDR_PORTS // 2 for sus in sus_of_group.values())
    assert not set.intersection(*sus_of_group.values())  # an SU is in one spine group
    assert built.cluster.hosts["gpu30721"].rails[3].spine_group == "sg31-spine-r3"
    assert built.cluster.hosts["gpu30721"].rails[3].core_group == "core-r3"


def test_switch_counts(superpod):
    fab = superpod[0].cluster.fabric
    assert (fab.levels, fab.su_count, fab.sus_per_spine_group) == (3, 1024, NDR_PORTS // 2)
    assert fab.leaf_switches == 1024 * 8
    # per rail: 32 spine groups of 32 spines (one down-port per SU leaf each), and their 32 x 32 x 32
    # up-ports on 64-port core switches: 512 per rail
    assert (fab.spine_groups, fab.spine_switches_per_group) == (32 * 8, 32)
    assert (fab.core_groups, fab.core_switches_per_group) == (8, 32 * 32 * 32 // NDR_PORTS)


def prod_blueprint() -> dict:
    return yaml.safe_load(PROD.read_text())["config"]["aiinfra:cluster"]


def test_core_cabling_uses_every_spine_up_port_once():
    bp = prod_blueprint()
    bp["fabric"].update(levels=3, sus_per_spine_group=4)  # 16 SUs: 4 spine groups per rail
    cluster = build_data(bp, "prod.yaml", "prod").cluster
    fab = cluster.fabric
    leaf_spine = [c for c in cables(cluster) if c.link == "leaf-spine"]
    spine_core = [c for c in cables(cluster) if c.link == "spine-core"]
    # a spine's down-ports 1-32 take leaves, its up-ports 33-64 the core: no port twice
    assert len({(c.spine, c.spine_port) for c in leaf_spine}) == len(leaf_spine)
    assert max(c.spine_port for c in leaf_spine) <= NDR_PORTS // 2
    assert len({(c.leaf, c.leaf_port) for c in spine_core}) == len(spine_core)
    assert {c.leaf_port for c in spine_core} == set(range(NDR_PORTS // 2 + 1, NDR_PORTS + 1))
    assert len({(c.spine, c.spine_port) for c in spine_core}) == len(spine_core)
    assert max(c.spine_port for c in spine_core) <= NDR_PORTS
    # the spines of rail r's spine groups uplink to rail r's core only
    assert all(c.leaf.split("-spine-r")[1].split("-")[0] == c.spine.removeprefix("core-r").split("-")[0]
               for c in spine_core)
    spines = {c.spine for c in leaf_spine}
    assert {c.leaf for c in spine_core} == spines
    assert len(spine_core) == len(spines) * NDR_PORTS // 2 == fab.core_switches * NDR_PORTS


def two_level(bp: dict) -> dict:
    out = copy.deepcopy(bp)
    out["fabric"].pop("levels", None)
    return out


def refused_ids(bp: dict) -> dict[str, list[str]]:
    with pytest.raises(BlueprintError) as refused:
        build_data(bp, "superpod.yaml", "superpod")
    out: dict[str, list[str]] = {}
    for p in refused.value.problems:
        if p.level.value == "error":
            out.setdefault(p.id, []).append(p.key_path)
    return out


@pytest.fixture(scope="module")
def superpod_bp() -> dict:
    return yaml.safe_load(FIXTURE.read_text())["config"]["aiinfra:cluster"]


def test_32k_nodes_on_two_levels_are_refused_by_validate(superpod_bp):
    # 1,024 SUs on one level of spines: render would draw a tree no 64-port spine can be
    assert refused_ids(two_level(superpod_bp)) == {"fabric-too-large": ["aiinfra:cluster.fabric.su_nodes"]}


def test_32k_nodes_whose_rail_addresses_reach_the_pod_range_are_refused_by_validate(superpod_bp):
    # /16 rail subnets: host index 33,768 (gpu32768) lies in the upper half, nv-ipam's pod blocks
    bp = copy.deepcopy(superpod_bp)
    bp["networks"]["ipoib"] = {"cidr": "10.64.0.0/13", "rail_prefix": 16}
    assert refused_ids(bp) == {"ipoib-pod-range-too-small": ["aiinfra:cluster.networks.ipoib.rail_prefix"]}


def test_more_spine_groups_than_a_core_switch_connects_are_refused(superpod_bp):
    bp = copy.deepcopy(superpod_bp)
    bp["fabric"]["sus_per_spine_group"] = 8  # 1,024 SUs in 128 spine groups; a 64-port core connects 64
    assert refused_ids(bp) == {"fabric-too-large": ["aiinfra:cluster.fabric.sus_per_spine_group"]}


def test_spine_groups_beyond_half_a_spine_are_refused(superpod_bp):
    bp = copy.deepcopy(superpod_bp)
    bp["fabric"]["sus_per_spine_group"] = NDR_PORTS // 2 + 1
    assert refused_ids(bp) == {"fabric-spine-group-too-large": ["aiinfra:cluster.fabric.sus_per_spine_group"]}


def test_rail_ports_follow_the_su_and_the_index(superpod):
    cluster = superpod[0].cluster
    for name in ("gpu00001", "gpu01024", "gpu01025", "gpu32768"):
        host = cluster.hosts[name]
        ports = host.rails
        number = int(name[3:])
        su, group = (number - 1) // SU_NODES + 1, (number - 1) // (SU_NODES * NDR_PORTS // 2) + 1
        assert [p.leaf for p in ports] == [f"su{su:02d}-leaf-r{r}" for r in range(8)]
        assert [p.spine_group for p in ports] == [f"sg{group:02d}-spine-r{r}" for r in range(8)]
        # the fixture's rail r is 10.(64 + 2r).0.0/15 and host index = 1000 + number (address_index 1001)
        index = 1000 + number
        assert host.rail_addresses == [p.ipoib_address for p in ports] == [
            f"10.{64 + 2 * r + index // 65536}.{index // 256 % 256}.{index % 256}" for r in range(8)]
