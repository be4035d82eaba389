"""playbooks/rolling.yml: drained batches from the blueprint's rollout, resume only after checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import ROOT, load_stack

from .ansible_run import run_playbook
from .inventory import mini_inventory

PLAYBOOK = ROOT / "playbooks" / "rolling.yml"


@pytest.fixture(scope="module")
def play() -> dict:
    return yaml.safe_load(PLAYBOOK.read_text())[0]


def names(tasks: list[dict]) -> list[str]:
    return [t["name"] for t in tasks]


def test_nodes_are_drained_before_the_roles_and_resumed_after_the_checks(play):
    pre, post = play["pre_tasks"], play["post_tasks"]
    assert names(pre)[0] == "Drain the node in Slurm"
    drain = pre[0]["ansible.builtin.command"]["argv"]
    assert drain[:2] == ["scontrol", "update"] and "state=drain" in drain
    assert pre[0]["delegate_to"] == "{{ _rolling_slurm_controller }}"
    assert "squeue" in pre[1]["ansible.builtin.command"] and pre[1]["until"]
    assert pre[2]["ansible.builtin.command"]["argv"][:2] == ["kubectl", "drain"]
    assert pre[2]["delegate_to"] == "{{ _rolling_k8s_controller }}"
    order = names(post)
    assert order.index("Check the node (GPUs and driver, HCAs and rates, Lustre) before it takes work again") \
        < order.index("Resume the node in Slurm") < order.index("Uncordon the node in Kubernetes")
    assert [r["role"] for r in play["roles"]] == ["nvidia_driver", "infiniband", "lustre_client"]
    assert all(next(iter(r["vars"].values())) is False for r in play["roles"])  # checks after the reboot


def test_batches_and_failure_budget_come_from_the_rendered_rollout(tmp_path, play):
    """The play's own vars_files, serial and max_fail_percentage over 3 local hosts, with a rendered
    rollout.yml beside the inventory: [1, 1] gives three batches; without it, the defaults [1, 32] two."""
    built = load_stack("prod")
    inv = yaml.safe_load(mini_inventory(built, ["gpu001", "gpu002", "gpu003"]))
    inv["all"]["vars"]["ansible_connection"] = "local"
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inv))
    probe = [{"name": "Probe", "hosts": "gpu_nodes", "gather_facts": False,
              "vars_files": [[play["vars_files"][0][0], str(ROOT / "playbooks" / play["vars_files"][0][1])]],
              "serial": play["serial"], "max_fail_percentage": play["max_fail_percentage"],
              "tasks": [{"name": "Batch", "ansible.builtin.debug": {"msg": "{{ ansible_play_batch }}"}}]}]
    (tmp_path / "probe.yml").write_text(yaml.safe_dump(probe))
    r = run_playbook(tmp_path / "probe.yml", tmp_path / "inventory.yml")
    assert r.rc == 0, r.tail()
    assert r.stdout.count("PLAY [Probe]") == 2  # one banner per batch
    rollout = tmp_path / "group_vars" / "all" / "rollout.yml"
    rollout.parent.mkdir(parents=True)
    rollout.write_text(yaml.safe_dump({"aiinfra_rollout": {"serial": [1, 1], "max_fail_percentage": 0}}))
    r = run_playbook(tmp_path / "probe.yml", tmp_path / "inventory.yml")
    assert r.rc == 0, r.tail()
    assert r.stdout.count("PLAY [Probe]") == 3


def test_syntax(tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(mini_inventory(load_stack("prod"), ["gpu001", "mgmt01", "kcp01"]))
    r = run_playbook(PLAYBOOK, inventory, "--syntax-check")
    assert r.rc == 0, r.tail()


def test_playbook_is_limit_friendly():
    """Controllers are reached by delegation, never by being in the play's hosts."""
    text = Path(PLAYBOOK).read_text()
    assert "hosts: \"{{ aiinfra_rolling_hosts | default('gpu_nodes') }}\"" in text
    assert "run_once" not in text
