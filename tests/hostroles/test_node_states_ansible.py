"""Nodes out of service in the inventory: node_drain/node_down groups, the state and reason as host
variables, and `hosts up` (deploy.ansible.run_site) leaving a node that is down alone unless --limit
names it. Run for real with ansible-runner over local connections."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from aiinfra.pipeline import build_text
from aiinfra.render import render_all
from aiinfra.render.inventory import INVENTORY_FILE, read_inventory
from conftest import ROOT

DOWN = '    nodes:\n      gpu02: {state: down, reason: "PSU failed, ticket 77"}\n      mgmt01: {state: drain, reason: "BIOS update"}\n'


def dev_with_states():
    text = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text().replace("\n    storage:\n", "\n" + DOWN + "\n    storage:\n", 1)
    return build_text(text, "stacks/Pulumi.dev.yaml", "dev")


def test_inventory_groups_and_host_vars_carry_the_state():
    built = dev_with_states()
    hostvars, groups = read_inventory(render_all(built.cluster, built.plan, only=["inventory"])[INVENTORY_FILE])
    assert groups["node_down"] == ["gpu02"]
    assert groups["node_drain"] == ["mgmt01"]
    hv = hostvars["gpu02"]
    assert (hv["aiinfra_node_state"], hv["aiinfra_node_reason"]) == ("down", "PSU failed, ticket 77")
    assert "aiinfra_node_state" not in hostvars["gpu01"]


def _project(tmp: Path, built) -> Path:
    root = tmp / "project"
    (root / "roles").mkdir(parents=True)
    (root / "ansible.cfg").write_text((ROOT / "ansible.cfg").read_text())
    (root / "playbooks").mkdir()
    site = [{"name": "Touch", "hosts": "all", "gather_facts": False,
             "tasks": [{"name": "Say hello", "ansible.builtin.debug": {"msg": "{{ inventory_hostname }}"}}]}]
    (root / "playbooks" / "site.yml").write_text(yaml.safe_dump(site))
    inventory = json.loads(render_all(built.cluster, built.plan, only=["inventory"])[INVENTORY_FILE])
    for group in inventory["all"]["children"].values():  # every host local: the run is real, no ssh needed
        for hv in (group.get("hosts") or {}).values():
            if hv:
                hv.update({"ansible_connection": "local", "ansible_python_interpreter": sys.executable})
    path = root / "manifests" / "dev" / INVENTORY_FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(inventory))
    return root


def test_hosts_up_leaves_a_down_node_alone_unless_named(tmp_path):
    from aiinfra.deploy.ansible import run_site

    built = dev_with_states()
    root = _project(tmp_path, built)
    everyone = run_site(built.cluster, root)
    assert everyone.ok, everyone.messages
    assert sorted(everyone.hosts) == ["gpu01", "mgmt01"]  # gpu02 is down for repair; drained mgmt01 is configured
    named = run_site(built.cluster, root, limit="gpu02")  # the replace runbook: the repaired node itself
    assert named.ok and sorted(named.hosts) == ["gpu02"]
