"""The IPoIB interface names in the Kubernetes objects are the ones the infiniband role creates.

The role's own templates render the per-host files (netplan, the udev naming rule, lustre.conf) from
prod's inventory for one GPU host of every Kubernetes group with rails; the NicClusterPolicy's
``ifNames`` and every IPoIBNetwork's ``master`` must name, rail by rail, the interfaces that netplan
file configures, and LNet must run on the storage port's interface.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data
from aiinfra.spec.fabric import ipoib_netdev
from conftest import ROOT, load_stack, render
from hostroles.ansible_run import ansible_playbook
from hostroles.test_rendered_files import render_host_files

#: A host whose inventory names its interfaces otherwise: the roles must follow the inventory, not
#: names typed in their defaults.
OVERRIDDEN = "gpu511"
OVERRIDES = {"aiinfra_ipoib_prefix": "rl-", "aiinfra_storage_netdev": "rl-mlx5_8"}


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def k8s_rail_groups(built) -> list:
    return [g for g in built.cluster.groups.values() if g.scheduler == "kubernetes" and g.node_type.rails]


@pytest.fixture(scope="module")
def prod():
    return load_stack("prod")


@pytest.fixture(scope="module")
def role_files(prod, tmp_path_factory) -> Path:
    if shutil.which(ansible_playbook()) is None and not Path(ansible_playbook()).exists():
        pytest.skip("ansible-playbook is not installed")
    hosts = [g.hosts[0] for g in k8s_rail_groups(prod)] + [OVERRIDDEN]
    return render_host_files(prod, hosts, tmp_path_factory.mktemp("railnames"),
                             {OVERRIDDEN: OVERRIDES})


def netplan_rails(files: Path, host: str) -> tuple[dict[int, str], list[str]]:
    """What the role's netplan file configures on ``host``: {rail: interface} and every interface."""
    text = (files / host / "netplan.yaml").read_text()
    rails = {int(rail): name for name, rail in re.findall(r"^ {4}(\S+):\s+# rail (\d+)\b", text, flags=re.M)}
    return rails, list(yaml.safe_load(text)["network"]["ethernets"])


def udev_prefix(files: Path, host: str) -> str:
    """The prefix the role's udev rule hands the naming helper (aiinfra-ipoib-name %k <prefix>)."""
    m = re.search(r'PROGRAM="/usr/local/sbin/aiinfra-ipoib-name %k (\S+)"', (files / host / "ipoib.rules").read_text())
    assert m, "the udev rule does not call the naming helper"
    return m.group(1)


def test_the_role_names_every_rail_after_its_hca_with_the_udev_rules_prefix(prod, role_files):
    for group in k8s_rail_groups(prod):
        host = prod.cluster.hosts[group.hosts[0]]
        rails, _ = netplan_rails(role_files, host.name)
        prefix = udev_prefix(role_files, host.name)
        assert rails == {p.rail: prefix + p.hca for p in host.rails}
        assert len(rails) == 8


def test_nic_cluster_policy_selects_the_interfaces_the_role_configures(prod, role_files):
    (policy,) = docs(render(prod, only=["k8s-platform"])["k8s/network-operator/nic-cluster-policy.yaml"])
    config = json.loads(policy["spec"]["rdmaSharedDevicePlugin"]["config"])
    (selector,) = [c["selectors"] for c in config["configList"]]
    for group in k8s_rail_groups(prod):
        rails, _ = netplan_rails(role_files, group.hosts[0])
        assert selector["ifNames"] == [rails[r] for r in sorted(rails)]


def test_every_ipoib_network_masters_its_rails_interface(prod, role_files):
    networks = docs(render(prod, only=["k8s-platform"])["k8s/network-operator/rail-networks.yaml"])
    assert {n["kind"] for n in networks} == {"IPoIBNetwork"}
    masters = {int(n["metadata"]["name"].removeprefix("ipoib-rail")): n["spec"]["master"] for n in networks}
    for group in k8s_rail_groups(prod):
        rails, _ = netplan_rails(role_files, group.hosts[0])
        assert masters == rails


def test_sriov_physical_functions_are_the_interfaces_the_role_configures(prod, role_files):
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"]["aiinfra:cluster"]
    raw["kubernetes"]["rdma"] = "sriov"
    rendered = render(build_data(raw, "prod.yaml", "prod"), only=["k8s-platform"])
    (policy,) = docs(rendered["k8s/network-operator/nic-cluster-policy.yaml"])
    resources = json.loads(policy["spec"]["sriovDevicePlugin"]["config"])["resourceList"]
    pfs = {int(re.fullmatch(r"rail(\d+)_vf", res["resourceName"]).group(1)): res["selectors"]["pfNames"]
           for res in resources}
    rails, _ = netplan_rails(role_files, k8s_rail_groups(prod)[0].hosts[0])
    assert pfs == {r: [name] for r, name in rails.items()}


def test_lnet_runs_on_the_storage_ports_interface(prod, role_files):
    for group in k8s_rail_groups(prod):
        name = group.hosts[0]
        _, interfaces = netplan_rails(role_files, name)
        storage = ipoib_netdev(group.node_type.storage_hca)
        assert storage in interfaces
        assert f'options lnet networks="o2ib0({storage})"' in (role_files / name / "lustre.conf").read_text()


def test_the_roles_take_the_names_from_the_inventory(prod, role_files):
    host = prod.cluster.hosts[OVERRIDDEN]
    rails, interfaces = netplan_rails(role_files, OVERRIDDEN)
    assert udev_prefix(role_files, OVERRIDDEN) == "rl-"
    assert rails == {p.rail: f"rl-{p.hca}" for p in host.rails}
    assert "rl-mlx5_8" in interfaces  # the storage port
    assert 'options lnet networks="o2ib0(rl-mlx5_8)"' in (role_files / OVERRIDDEN / "lustre.conf").read_text()


def test_the_blueprint_cannot_name_rail_interfaces_the_role_would_not_create():
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["aiinfra:cluster"]
    raw["kubernetes"]["rail_netdevs"] = "ibp[0-7]"
    with pytest.raises(BlueprintError, match="rail_netdevs"):
        build_data(raw, "dev.yaml", "dev")
