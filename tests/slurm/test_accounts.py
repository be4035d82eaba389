"""slurm.accounts and slurm.users: what validate accepts and refuses beyond the broken fixtures
(tests/fixtures/broken/Pulumi.slurm-*.yaml), and what the slurm role receives from the render.
The sync itself runs against a real slurmdbd in tests/slurm/test_accounts_bed.py."""

from __future__ import annotations

import copy

import pytest
import yaml

from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data, build_file
from conftest import ROOT, render

TESTBED = ROOT / "tests" / "fixtures" / "slurm-testbed" / "stacks" / "Pulumi.testbed.yaml"
DEV = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["aiinfra:cluster"]


def problems(slurm_changes: dict) -> list[tuple[str, str]]:
    bp = copy.deepcopy(DEV)
    bp["slurm"].update(slurm_changes)
    try:
        build_data(bp, "dev.yaml", "dev")
    except BlueprintError as exc:
        return [(p.id, p.key_path) for p in exc.problems if p.level.value == "error"]
    return []


QOS = [{"name": "normal"}, {"name": "high", "priority": 100, "preempt": ["low"]}, {"name": "low"}]


def test_a_day_one_tree_is_accepted():
    assert problems({
        "qos": QOS,
        "accounts": [
            # normal exists in every slurmdbd; a child's default QoS may come from its parent's grants
            {"name": "ml", "fairshare": 100, "qos": ["normal", "high", "low"]},
            {"name": "training", "parent": "ml", "fairshare": "parent", "default_qos": "high",
             "users": ["alice", "bob"]},
            {"name": "research", "qos": ["normal", "low"], "default_qos": "low", "users": ["alice"],
             "unix_group": "ml-research"},
            {"name": "eval", "default_qos": "normal", "unix_group": "ml-eval"},
        ],
        # alice is in two accounts: her default says which; carol may default to a group's account
        "users": [{"name": "alice", "default_account": "research"},
                  {"name": "carol", "default_account": "eval", "admin_level": "operator"}],
    }) == []


def test_a_default_qos_outside_the_inherited_grants_is_refused():
    assert problems({
        "qos": QOS,
        "accounts": [{"name": "ml", "qos": ["normal", "low"]},
                     {"name": "training", "parent": "ml", "default_qos": "high", "users": ["alice"]}],
    }) == [("slurm-default-qos-not-granted", "aiinfra:cluster.slurm.accounts[1].default_qos")]


def test_an_account_and_a_member_named_twice_are_refused():
    found = problems({"accounts": [{"name": "training", "users": ["alice", "alice"]},
                                   {"name": "training", "users": ["bob"]}]})
    assert ("duplicate-name", "aiinfra:cluster.slurm.accounts[0].users[1]") in found
    assert ("duplicate-name", "aiinfra:cluster.slurm.accounts[1].name") in found


@pytest.mark.parametrize(("change", "path"), [
    # Slurm keeps user names in lower case
    ({"accounts": [{"name": "training", "users": ["Alice"]}]}, "accounts[0].users[0]"),
    ({"accounts": [{"name": "training", "fairshare": 0}]}, "accounts[0].fairshare"),
    # a '|' would break sacctmgr's parsable output
    ({"accounts": [{"name": "training", "description": "a|b"}]}, "accounts[0].description"),
    ({"accounts": [{"name": "training", "users": ["alice"]}], "users": [{"name": "alice", "admin_level": "root"}]},
     "users[0].admin_level"),
])
def test_malformed_values_are_refused(change, path):
    assert problems(change) == [("invalid-value", f"aiinfra:cluster.slurm.{path}")]


def test_the_role_gets_the_accounts_as_the_blueprint_declares_them():
    declared = yaml.safe_load(TESTBED.read_text())["config"]["aiinfra:cluster"]["slurm"]
    group_vars = yaml.safe_load(render(build_file(TESTBED, "testbed"), only=["slurm", "host_vars"])
                                ["ansible/group_vars/all/slurm.yml"])
    accounting = group_vars["aiinfra_slurm_accounting"]
    assert [a["name"] for a in accounting["accounts"]] == [a["name"] for a in declared["accounts"]]
    for want, got in zip(declared["accounts"], accounting["accounts"], strict=True):
        assert got["parent"] == want.get("parent", "root")
        assert got["users"] == sorted(want.get("users", []))
        assert got["unix_group"] == want.get("unix_group")
        assert sorted(got["qos"]) == sorted(want.get("qos", []))
        assert got["default_qos"] == want.get("default_qos")
        assert got["fairshare"] == want.get("fairshare")  # unset: null, Slurm's value left alone
    assert {u["name"]: u["fairshare"] for u in accounting["users"]} == {
        u["name"]: u.get("fairshare") for u in declared["users"]}
