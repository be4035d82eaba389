"""A kubelet's labels and taints reach its host through the inventory, not through nodes.yaml.

The kubernetes role merges its node group's, its SU's and its own inventory variables
(roles/kubernetes/tasks/validate.yml); together they must be exactly the node's entry in the
rendered nodes.yaml, for every kubelet host, and the role must merge them so.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from aiinfra.pipeline import Built, build_text
from aiinfra.render.inventory import inventory_model
from aiinfra.render.k8s_hosts import nodes_data
from conftest import ROOT, load_stack, render

sys.path.insert(0, str(ROOT / "benchmarks"))


def merged(built: Built, model, name: str) -> dict:
    """What the role computes for ``name`` from the variables Ansible gives it."""
    cluster = built.cluster
    host = cluster.hosts[name]
    gv = model.group_vars[cluster.groups[host.group].ansible_group]
    su = model.group_vars.get(f"su{host.su:02d}", {}) if host.su is not None else {}
    hv = model.hostvars[name]
    return {"labels": {**gv["aiinfra_k8s_group_labels"], **su.get("aiinfra_k8s_su_labels", {}),
                       **hv.get("aiinfra_k8s_labels", {})},
            "taints": gv["aiinfra_k8s_taints"] + hv.get("aiinfra_k8s_host_taints", [])}


def synthetic_2048() -> Built:
    """Kubernetes GPU nodes over several SUs (128 nodes, 4 SUs), one drained."""
    from bench_render import synthetic

    doc = yaml.safe_load(synthetic(2048))
    doc["config"]["aiinfra:cluster"]["nodes"] = {"gpu1930": {"state": "drain", "reason": "fan"}}
    return build_text(yaml.safe_dump(doc, sort_keys=False), "synthetic-2048", "s2048")


@pytest.mark.parametrize("which", ["prod", "dev", "synthetic-2048"])
def test_group_su_and_host_variables_give_every_kubelet_its_labels_and_taints(which):
    built = synthetic_2048() if which == "synthetic-2048" else load_stack(which)
    model = inventory_model(built.cluster)
    nodes = nodes_data(built.cluster)
    assert nodes
    for name, node in nodes.items():
        assert merged(built, model, name) == {"labels": node["labels"], "taints": node["taints"]}, name
    if which == "synthetic-2048":
        own = [hv for hv in model.hostvars.values() if "aiinfra_k8s_labels" in hv]
        # per host only the NVLink domain (the node itself on HGX boards); leaves and SU per SU
        assert {k for hv in own for k in hv["aiinfra_k8s_labels"]} == {"aiinfra.io/nvlink-domain"}
        assert len({su for su, gv in model.group_vars.items() if gv.get("aiinfra_k8s_su_labels")}) == 4
        assert model.hostvars["gpu1930"]["aiinfra_k8s_host_taints"] == nodes["gpu1930"]["taints"][1:]


def test_the_role_merges_them(tmp_path):
    """The role's own derivation (validate.yml) over prod's inventory for a control-plane host and
    GPU hosts, one of them drained through its inventory variables."""
    from hostroles.ansible_run import ansible_playbook, run_playbook
    from hostroles.inventory import mini_inventory

    if shutil.which(ansible_playbook()) is None and not Path(ansible_playbook()).exists():
        pytest.skip("ansible-playbook is not installed")
    prod = load_stack("prod")
    nodes = nodes_data(prod.cluster)
    hosts = [next(iter(nodes)), "gpu481", "gpu512"]
    drain = {"effect": "NoSchedule", "key": "aiinfra.io/node-state", "value": "drain"}
    rendered = tmp_path / "k8s-hosts"
    rendered.mkdir()
    for rel, text in render(prod, only=["k8s-hosts"]).items():
        (rendered / Path(rel).name).write_text(text)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(mini_inventory(prod, hosts, {"gpu512": {"aiinfra_k8s_host_taints": [drain]}}))
    out = tmp_path / "out"
    out.mkdir()
    play = [{"name": "Derive", "hosts": "all", "gather_facts": False,
             "vars_files": [str(ROOT / "roles" / "kubernetes" / "defaults" / "main.yml")],
             "tasks": [{"name": "Validate", "ansible.builtin.include_tasks": str(ROOT / "roles" / "kubernetes" / "tasks"
                                                                               / "validate.yml")},
                       {"name": "Write", "delegate_to": "localhost", "ansible.builtin.copy": {
                           "dest": f"{out}/{{{{ inventory_hostname }}}}.json", "mode": "0644",
                           "content": "{{ _kubernetes_node | to_json }}"}}]}]
    playbook = tmp_path / "derive.yml"
    playbook.write_text(yaml.safe_dump(play))
    r = run_playbook(playbook, inventory, "-e", "ansible_connection=local", "-e",
                     f"ansible_python_interpreter={sys.executable}", "-e", f"kubernetes_rendered_dir={rendered}")
    assert r.rc == 0, r.tail()
    for name in hosts:
        got = json.loads((out / f"{name}.json").read_text())
        want = {"labels": nodes[name]["labels"], "taints": nodes[name]["taints"] + ([drain] if name == "gpu512" else [])}
        assert got == want, name
