"""The fabric picture and the cabling plan: committed copies current, every SU and marked node drawn,
one cable per rail HCA, no switch port used twice, and the plan read back by import-cabling."""

from __future__ import annotations

import csv
import io
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import pytest
from ClusterShell.NodeSet import NodeSet

from aiinfra.checks import registry
from aiinfra.pipeline import build_text
from aiinfra.render.cabling import cabling_csv
from aiinfra.render.fabric_draw import fabric_svg, picture, text_width
from aiinfra.spec.cabling import read_cabling, scalable_units_yaml
from aiinfra.spec.cluster import build_cluster, expand_groups, su_name
from aiinfra.spec.loader import raise_errors, read_text, to_blueprint
from conftest import ROOT, load_stack

DOCS = ROOT / "docs" / "fabric"
PROD = (ROOT / "stacks" / "Pulumi.prod.yaml").read_text()
SVG = "{http://www.w3.org/2000/svg}"


def prod_variant(old: str, new: str):
    assert old in PROD
    return build_text(PROD.replace(old, new, 1), "stacks/Pulumi.prod.yaml", "prod")


def prod_fabric(*changes: tuple[str, str]):
    """The Cluster of prod with ``changes`` (old, new): the spec stage and its checks only (the fabric is
    all this file looks at; a smaller gpu-train would fail prod's training plan)."""
    text = PROD
    for old, new in changes:
        assert old in text
        text = text.replace(old, new, 1)
    source = read_text(text, "stacks/Pulumi.prod.yaml", "prod")
    bp = to_blueprint(source)
    view = registry.BlueprintView(bp, expand_groups(bp))
    raise_errors(source, registry.run("blueprint", view))
    return build_cluster("prod", source.file, bp, view.hosts, view.addresses.indices)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def sus(cluster) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for h in cluster.hosts.values():
        if h.su is not None:
            out.setdefault(h.su, []).append(h.name)
    return out


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_committed_picture_and_cabling_are_what_the_blueprint_gives(env):
    cluster = load_stack(env).cluster
    how = f"regenerate: aiinfra fabric draw --stack {env} --out docs/fabric/{env}-fabric.svg; " \
          f"aiinfra fabric cabling --stack {env} --out docs/fabric/{env}-cabling.csv"
    assert (DOCS / f"{env}-fabric.svg").read_bytes() == fabric_svg(cluster).encode(), how
    assert (DOCS / f"{env}-cabling.csv").read_bytes() == cabling_csv(cluster).encode(), how


def test_same_bytes_from_a_fresh_build():
    fresh = build_text(PROD, "stacks/Pulumi.prod.yaml", "prod").cluster
    assert fabric_svg(fresh) == fabric_svg(load_stack("prod").cluster)
    assert cabling_csv(fresh) == cabling_csv(load_stack("prod").cluster)


def test_svg_shows_every_su_its_node_count_and_every_marked_node():
    built = prod_variant("      gpu200: {state: down,",
                         "      gpu[010-012]: {state: drain, reason: \"firmware update\"}\n      gpu200: {state: down,")
    cluster = built.cluster
    svg = fabric_svg(cluster, {"gpu300": "rail HCA(s) not in use: mlx5_5"})
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    shown = texts(svg)
    joined = "\n".join(shown)
    for su, hosts in sus(cluster).items():
        assert su_name(su) in shown
        assert str(NodeSet.fromlist(hosts)) in joined
    assert sum(t == "32 nodes" for t in shown) == len(sus(cluster))
    states = {h: st for g in cluster.groups.values() for h, st in g.states.items()}
    assert set(states) == {"gpu010", "gpu011", "gpu012", "gpu200"}
    marked = [t for t in shown if t.startswith("gpu[010-012]") or t.startswith("gpu200") or t.startswith("gpu300")]
    assert len(marked) == 3
    assert any("drain" in t and states["gpu010"].reason in t for t in marked)
    assert any("down" in t and states["gpu200"].reason in t for t in marked)
    assert any("failed" in t and "mlx5_5" in t for t in marked)
    # the SU columns count them: 3 drained in su01, 1 down in su07, 1 failed in su10
    assert {"3 drain", "1 down", "1 failed"} <= set(shown)


def test_picture_stays_inside_its_page_at_prods_size():
    pic = picture(load_stack("prod").cluster)
    assert pic.width < 1600  # 16 SU columns, not 512 nodes
    for s in pic.shapes:
        if hasattr(s, "w"):
            assert s.x >= 0 and s.x + s.w <= pic.width and s.y + s.h <= pic.height
        elif hasattr(s, "text"):
            left = {"start": 0, "middle": text_width(s.text, s.size) // 2, "end": text_width(s.text, s.size)}[s.anchor]
            assert s.x - left >= 0 and s.x - left + text_width(s.text, s.size) <= pic.width, s.text
            assert s.y <= pic.height


NO_DOWN_NODE = ("      gpu200: {state: down, reason: \"XID 79 on GPU 3, RMA 4711\"}\n", "")
SMALL_JOB = ("nodes: 448 ", "nodes: 16 ")
VARIANTS = {
    "dev": None,
    "prod": None,
    "fat-tree": [("topology: rail-optimized-fat-tree", "topology: fat-tree")],
    "3 SUs": [("hosts: gpu[001-480]", "hosts: gpu[001-064]"), NO_DOWN_NODE, SMALL_JOB],
    "11 SUs": [("hosts: gpu[001-480]", "hosts: gpu[001-320]"), SMALL_JOB],  # 352 uplinks on 6 spines: not a round share
    "1 SU": [("hosts: gpu[001-480]", "hosts: gpu[001-032]"), ("hosts: gpu[481-512]", "hosts: gpu[033-064]"),
             ("su_nodes: 32 ", "su_nodes: 64 "), NO_DOWN_NODE, SMALL_JOB],
    "oversubscribed": [("su_nodes: 32 ", "su_nodes: 40 ")],
    "cabling map": [("      su_nodes: 32 ", "      scalable_units: {1: 'gpu[001-031,033]', 2: 'gpu[032,034-064]', "
                    + ", ".join(f"{k}: 'gpu[{32 * k - 31:03d}-{32 * k:03d}]'" for k in range(3, 17))
                    + "}\n      su_nodes: 32 ")],  # gpu032 and gpu033 cabled the other way round
}


def variant(name: str):
    if VARIANTS[name] is None:
        return load_stack(name).cluster
    return prod_fabric(*VARIANTS[name])


@pytest.mark.parametrize("name", [n for n in VARIANTS if n != "cabling map"])
def test_cabling_has_one_cable_per_rail_hca_and_no_port_twice(name):
    cluster = variant(name)
    fab = cluster.fabric
    table = rows(cabling_csv(cluster))
    nodes = [r for r in table if r["link"] == "node-leaf"]
    ups = [r for r in table if r["link"] == "leaf-spine"]
    assert len(nodes) + len(ups) == len(table)
    expected = Counter((h.name, p.hca, p.rail, p.leaf) for h in cluster.hosts.values() if h.su is not None
                       for p in h.rails)
    got = Counter((r["host"], r["hca"], int(r["rail"]), r["leaf"]) for r in nodes)
    assert got == expected and max(got.values()) == 1
    assert all(r["su"] == su_name(cluster.hosts[r["host"]].su) for r in nodes)
    leaf_ports = Counter((r["leaf"], int(r["leaf_port"])) for r in table)
    assert max(leaf_ports.values()) == 1
    assert all(1 <= port <= fab.switch_radix for _leaf, port in leaf_ports)
    # a leaf's node ports sit below its uplinks
    top_down = max(int(r["leaf_port"]) for r in nodes)
    assert all(int(r["leaf_port"]) > top_down for r in ups)
    leaves = {r["leaf"] for r in nodes}
    assert len(leaves) == fab.leaf_switches
    if fab.spine_switches:
        per_leaf = Counter(r["leaf"] for r in ups)
        assert set(per_leaf) == leaves and len(set(per_leaf.values())) == 1
        up = next(iter(per_leaf.values()))
        # half the ports go up (the model's non-blocking leaf), or what an oversubscribed SU leaves
        assert up == fab.switch_radix // 2 if fab.su_nodes <= fab.switch_radix // 2 else \
            up == fab.switch_radix - fab.su_nodes
        spine_ports = Counter((r["spine"], int(r["spine_port"])) for r in ups)
        assert max(spine_ports.values()) == 1
        assert all(1 <= port <= fab.switch_radix for _spine, port in spine_ports)
        assert len({s for s, _ in spine_ports}) == fab.spine_switches
        # a leaf's uplinks go to its own spine group only
        groups = {p.leaf: p.spine_group for h in cluster.hosts.values() for p in h.rails}
        assert all(r["spine"].startswith(groups[r["leaf"]] + "-") for r in ups)
    else:
        assert not ups


def test_decommissioning_a_node_removes_its_cables_only():
    before = rows(cabling_csv(load_stack("prod").cluster))
    after = rows(cabling_csv(prod_variant(
        "      gpu200: {state: down,", "      gpu005: {state: decommissioned, reason: \"retired\"}\n"
        "      gpu200: {state: down,").cluster))
    assert [r for r in before if r["host"] != "gpu005"] == after
    assert len(before) - len(after) == 8


@pytest.mark.parametrize("name", ["prod", "dev", "cabling map"])
def test_cabling_round_trips_through_import_cabling(name, tmp_path):
    cluster = variant(name)
    sheet = tmp_path / "cabling.csv"
    sheet.write_text(cabling_csv(cluster))
    units = read_cabling(sheet)
    assert {su: sorted(h) for su, h in units.items()} == {su: sorted(h) for su, h in sus(cluster).items()}


def test_the_imported_map_gives_the_same_plan(aiinfra, tmp_path):
    cluster = load_stack("prod").cluster
    sheet = tmp_path / "cabling.csv"
    sheet.write_text(cabling_csv(cluster))
    r = aiinfra("fabric", "import-cabling", str(sheet), "--stack", "prod")
    assert r.code == 0, r.stderr
    assert r.stdout == scalable_units_yaml(read_cabling(sheet)) and "change SU" not in r.stderr
    block = "".join(f"      {line}\n" for line in r.stdout.splitlines())
    mapped = prod_variant("      su_nodes: 32 ", block + "      su_nodes: 32 ").cluster
    assert cabling_csv(mapped) == cabling_csv(cluster)
    assert fabric_svg(mapped) == fabric_svg(cluster)


def test_cli_writes_svg_png_and_csv(aiinfra, tmp_path, monkeypatch):
    cluster = load_stack("dev").cluster
    r = aiinfra("fabric", "draw", "--stack", "dev", "--out", str(tmp_path / "f.svg"))
    assert r.code == 0, r.stderr
    assert (tmp_path / "f.svg").read_text() == fabric_svg(cluster)
    r = aiinfra("fabric", "draw", "--stack", "dev")
    assert r.code == 0 and r.stdout == fabric_svg(cluster)
    r = aiinfra("fabric", "cabling", "--stack", "dev")
    assert r.code == 0 and r.stdout == cabling_csv(cluster)
    r = aiinfra("fabric", "draw", "--stack", "dev", "--out", str(tmp_path / "f.txt"))
    assert r.code == 2 and "write .svg or .png" in r.stderr and not (tmp_path / "f.txt").exists()
    r = aiinfra("fabric", "cabling", "--stack", "dev", "--out", str(tmp_path / "no" / "c.csv"))
    assert r.code == 2 and "cannot write" in r.stderr
    with monkeypatch.context() as without:
        without.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
        r = aiinfra("fabric", "draw", "--stack", "dev", "--out", str(tmp_path / "f.png"))
    assert r.code == 2 and "pip install matplotlib" in r.stderr and not (tmp_path / "f.png").exists()
    pytest.importorskip("matplotlib")
    r = aiinfra("fabric", "draw", "--stack", "dev", "--out", str(tmp_path / "f.png"))
    assert r.code == 0, r.stderr
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_cli_marks_the_nodes_that_fail_the_gate(aiinfra):
    samples = ROOT / "tests" / "training" / "fixtures" / "nccl" / "failing"
    r = aiinfra("fabric", "draw", "--stack", "prod", "--results", str(samples))
    assert r.code == 0, r.stderr
    failed = [t for t in texts(r.stdout) if " failed " in t]
    assert [t.split()[0] for t in failed] == ["gpu003", "gpu004"]
    assert "mlx5_5" in failed[0] and "all_reduce_perf" in failed[1]
