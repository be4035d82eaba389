"""The cabling map: a site's CSV becomes fabric.scalable_units, and the SUs follow it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_text
from aiinfra.render import render_all
from aiinfra.spec.cabling import read_cabling, scalable_units_yaml
from conftest import ROOT, load_stack

PROD = (ROOT / "stacks" / "Pulumi.prod.yaml").read_text()


def sheet(path: Path, su_of: dict[str, str], extra_rows: list[tuple] = ()) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rack", "Host", "SU", "leaf port"])
        for i, (host, su) in enumerate(su_of.items()):
            w.writerow([f"r{i // 8}", host, su, i])
        w.writerows(extra_rows)
    return path


def prod_with_map(block: str) -> str:
    indented = "".join(f"      {line}\n" for line in block.splitlines())
    return PROD.replace("      su_nodes: 32 ", indented + "      su_nodes: 32 ", 1)


def test_a_map_that_matches_the_numbers_changes_no_rendered_file(tmp_path):
    prod = load_stack("prod")
    current = {h.name: f"su{h.su:02d}" for h in prod.cluster.hosts.values() if h.su is not None}
    block = scalable_units_yaml(read_cabling(sheet(tmp_path / "c.csv", current)))
    built = build_text(prod_with_map(block), "stacks/Pulumi.prod.yaml", "prod")
    assert {h.name: h.su for h in built.cluster.hosts.values()} == {h.name: h.su for h in prod.cluster.hosts.values()}
    assert render_all(built.cluster, built.plan) == render_all(prod.cluster, prod.plan)


def test_the_map_moves_nodes_between_sus(tmp_path):
    prod = load_stack("prod")
    su_of = {h.name: str(h.su) for h in prod.cluster.hosts.values() if h.su is not None}
    su_of["gpu032"], su_of["gpu033"] = "2", "1"  # two nodes cabled the other way round
    block = scalable_units_yaml(read_cabling(sheet(tmp_path / "c.csv", su_of)))
    built = build_text(prod_with_map(block), "stacks/Pulumi.prod.yaml", "prod")
    topology = render_all(built.cluster, built.plan)["slurm/topology.conf"]
    assert "SwitchName=su01 Nodes=gpu[001-031,033]" in topology
    assert "SwitchName=su02 Nodes=gpu[032,034-064]" in topology
    assert [p.leaf for p in built.cluster.hosts["gpu033"].rails][:1] == ["su01-leaf-r0"]


def test_rows_per_port_must_agree_and_bad_rows_name_their_line(tmp_path):
    path = sheet(tmp_path / "c.csv", {"gpu001": "1", "gpu002": "su01"},
                 [("r0", "gpu001", "2", 9), ("r0", "GPU 3", "1", 10), ("r0", "gpu004", "x", 11)])
    with pytest.raises(BlueprintError) as exc:
        read_cabling(path)
    lines = [p.format(str(path)) for p in exc.value.problems]
    assert lines[0].startswith(f"{path}:4: ") and "SU 2 here and SU 1 on line 2" in lines[0]
    assert lines[1].startswith(f"{path}:5: ") and "'GPU 3' is not a host name" in lines[1]
    assert lines[2].startswith(f"{path}:6: ") and "'x' is not an SU number" in lines[2]
    assert all("(fix: " in line for line in lines)


def test_cli_prints_the_block_and_refuses_a_sheet_that_misses_nodes(aiinfra, tmp_path):
    prod = load_stack("prod")
    su_of = {h.name: str(h.su) for h in prod.cluster.hosts.values() if h.su is not None and h.name != "gpu017"}
    r = aiinfra("fabric", "import-cabling", str(sheet(tmp_path / "c.csv", su_of)), "--stack", "prod")
    assert r.code == 1 and "GPU nodes not in the sheet: gpu017" in r.stderr
    assert r.stdout.startswith("scalable_units:") and "  1: gpu[001-016,018-032]" in r.stdout
    su_of["gpu017"] = "1"
    r = aiinfra("fabric", "import-cabling", str(sheet(tmp_path / "c.csv", su_of)), "--stack", "prod")
    assert r.code == 0, r.stderr


def test_the_map_must_hold_every_gpu_node_once():
    text = prod_with_map("scalable_units:\n  1: gpu[001-031]\n  2: gpu[031-064]\n")
    with pytest.raises(BlueprintError) as exc:
        build_text(text, "prod", "prod")
    ids = {(p.id, p.key_path) for p in exc.value.problems}
    assert ("duplicate-host", "aiinfra:cluster.fabric.scalable_units[2]") in ids
    assert ("su-map-incomplete", "aiinfra:cluster.fabric.scalable_units") in ids
