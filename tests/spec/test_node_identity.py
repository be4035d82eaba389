"""A node's identity comes from its name: adding, removing or replacing one node changes only that
node's lines in every rendered file, plus the folded hostlists that hold it and the capacity totals
(GPU counts, quotas, node counts) of the summary files. Property over prod, both directions.
"""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from ClusterShell.NodeSet import NodeSet

from aiinfra.pipeline import build_text
from aiinfra.render import render_all
from aiinfra.render.inventory import INVENTORY_FILE
from conftest import ROOT

PROD = (ROOT / "stacks" / "Pulumi.prod.yaml").read_text()
# files whose capacity totals follow the node count (the only lines where a bare number may change)
TOTALS = {"cluster.json", "k8s/kueue/queues.yaml"}
TOTALS_SUFFIX = "/thresholds.json"
HOSTLIST = re.compile(r"gpu(?:\[[\d,\-]+\]|\d+)")


def render(text: str) -> dict[str, str]:
    built = build_text(text, "stacks/Pulumi.prod.yaml", "prod")
    return render_all(built.cluster, built.plan)


def with_hosts(group_line: str, hosts: NodeSet) -> str:
    """prod with one group's hostlist changed (and the day-2 state of a host it no longer has dropped)."""
    old = next(line for line in PROD.splitlines() if line.strip() == f"hosts: {group_line}")
    text = PROD.replace(old, old.replace(group_line, str(hosts)), 1)
    gone = NodeSet(group_line) - hosts
    return "\n".join(line for line in text.splitlines()
                     if not re.match(r"\s+(\S+): \{state:", line) or re.match(r"\s+(\S+):", line)[1] not in gone) + "\n"


def normalise(line: str, node: str, numbers: bool, separators: bool = False) -> str:
    if separators:  # the inventory's JSON: the line before a removed last entry loses its comma
        line = line.rstrip(",")
    line = HOSTLIST.sub(lambda m: str(NodeSet(m.group(0)) - NodeSet(node)), line)
    return re.sub(r"\d+(\.\d+)?", "#", line) if numbers else line


def unexplained(before: dict[str, str], after: dict[str, str], node: str) -> list[str]:
    """Lines that changed for another reason than the node itself."""
    mentions = re.compile(rf"\b{node}\b")
    out = []
    for path in sorted(set(before) | set(after)):
        numbers = path in TOTALS or path.endswith(TOTALS_SUFFIX)
        seps = path == INVENTORY_FILE
        old = Counter(normalise(x, node, numbers, seps) for x in before.get(path, "").splitlines() if not mentions.search(x))
        new = Counter(normalise(x, node, numbers, seps) for x in after.get(path, "").splitlines() if not mentions.search(x))
        out += [f"{path}: -{x}" for x in (old - new)] + [f"{path}: +{x}" for x in (new - old)]
    return out


@pytest.fixture(scope="module")
def prod_files() -> dict[str, str]:
    return render(PROD)


NODES = ["gpu200", "gpu480", *random.Random(13).sample([f"gpu{n:03d}" for n in range(1, 513)], 3)]


@pytest.mark.parametrize("node", NODES)
def test_removing_one_node_changes_only_its_lines(prod_files, node):
    group_line = "gpu[001-480]" if int(node[3:]) <= 480 else "gpu[481-512]"
    after = render(with_hosts(group_line, NodeSet(group_line) - NodeSet(node)))
    assert node not in "".join(after.values()).replace(f"{node}0", "")  # gone everywhere (gpu200 != gpu2000)
    assert unexplained(prod_files, after, node) == []


def test_adding_a_node_changes_only_its_lines():
    """gpu200 back into its SU (the replacement of a failed node, seen from the blueprint)."""
    without = render(with_hosts("gpu[001-480]", NodeSet("gpu[001-199,201-480]")))
    after = render(PROD)
    assert "gpu200" in after["hosts/etc-hosts"]
    assert unexplained(without, after, "gpu200") == []


def test_a_node_past_the_last_su_opens_a_new_su_and_nothing_else(prod_files):
    after = render(with_hosts("gpu[481-512]", NodeSet("gpu[481-513]")))
    extra = unexplained(prod_files, after, "gpu513")
    # the new SU's own entries, and the 405B group placement that now spans two SUs
    su17 = [e for e in extra if e.startswith('ansible/inventory.json: +"su17": {')]  # with its SU's labels
    assert len(su17) == 1 and su17[0].endswith('"hosts": {') and "su17-leaf-r7" in su17[0]
    assert set(extra) - set(su17) == {
        "ansible/inventory.json: +}}",
        "cluster.json: +      {", 'cluster.json: +        "name": "su#",', 'cluster.json: +        "nodes": #',
        "cluster.json: +      },",
        "k8s/serving/llama3-405b/leaderworkerset.yaml: -          aiinfra.io/su: su16",
        "k8s/serving/llama3-405b/leaderworkerset.yaml: +  annotations:",
        "k8s/serving/llama3-405b/leaderworkerset.yaml: +    leaderworkerset.sigs.k8s.io/exclusive-topology: aiinfra.io/su",
    }


def test_the_property_catches_a_renumbering(prod_files):
    """The check itself: packing hosts by position (the old layout) renumbers every later host."""
    after = render(with_hosts("gpu[001-480]", NodeSet("gpu[001-480]")).replace("address_index: 1001", "address_index: 1002"))
    assert len(unexplained(prod_files, after, "gpu200")) > 400


def test_a_node_keeps_its_addresses_when_moved_between_groups():
    text = with_hosts("gpu[001-480]", NodeSet("gpu[001-479]"))
    text = text.replace("hosts: gpu[481-512]", "hosts: gpu[480-512]", 1)
    moved = build_text(text, "prod", "prod").cluster.hosts["gpu480"]
    before = build_text(PROD, "prod", "prod").cluster.hosts["gpu480"]
    assert (moved.management_address, moved.bmc_address, moved.storage_address, moved.su) == (
        before.management_address, before.bmc_address, before.storage_address, before.su)
    assert [p.ipoib_address for p in moved.rails] == [p.ipoib_address for p in before.rails]
    assert moved.group == "gpu-serve" and before.group == "gpu-train"
