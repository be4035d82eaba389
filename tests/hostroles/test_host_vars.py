"""The host roles' inventory variables and /etc/hosts block, against prod's blueprint."""

from __future__ import annotations

import ipaddress

import yaml

from aiinfra.catalog.links import LINK_RATES
from aiinfra.render.host_vars import render_host_vars
from conftest import ROOT, load_stack


def rendered(env: str) -> dict[str, object]:
    out = render_host_vars(load_stack(env).cluster, load_stack(env).plan)
    return {path: (yaml.safe_load(text) if path.endswith(".yml") else text) for path, text in out.items()}


def test_storage_vars_carry_the_lustre_and_nvmeof_declarations():
    bp = load_stack("prod").cluster.blueprint
    storage = rendered("prod")["ansible/group_vars/all/storage.yml"]
    lustre = storage["aiinfra_lustre"]
    assert lustre["fsname"] == bp.storage.lustre.fsname == "aifs"
    assert lustre["mgs_nids"] == ["10.2.255.1@o2ib", "10.2.255.2@o2ib"]
    assert lustre["mount_options"] == ["flock", "lazystatfs", "noatime"]
    assert lustre["lnet"] == "o2ib0" and lustre["mountpoint"] == "/lustre"
    assert [t["nqn"] for t in storage["aiinfra_nvmeof"]["targets"]] == [t.nqn for t in bp.storage.nvmeof.targets]
    assert storage["aiinfra_nvmeof"]["transport"] == "rdma"
    assert storage["aiinfra_storage_network"] == {"cidr": "10.2.0.0/16", "prefix": 16}


def test_dev_without_nvmeof_renders_null():
    assert rendered("dev")["ansible/group_vars/all/storage.yml"]["aiinfra_nvmeof"] is None


def test_fabric_vars_order_the_subnet_managers_and_map_the_catalog_rates():
    fabric = rendered("prod")["ansible/group_vars/all/fabric.yml"]
    assert fabric["aiinfra_fabric"]["subnet_managers"] == ["mgmt01", "mgmt02"]
    assert fabric["aiinfra_fabric"]["pkeys"] == ["0x7fff"]
    assert fabric["aiinfra_fabric"]["ibstat_rate"] == 400
    assert fabric["aiinfra_ibstat_rates"] == {n: r.ibstat_rate for n, r in LINK_RATES.items()}


def test_rollout_batches_come_from_the_blueprint_or_the_defaults():
    prod = rendered("prod")["ansible/group_vars/all/rollout.yml"]["aiinfra_rollout"]
    assert prod["serial"] == [1, 32] and prod["max_fail_percentage"] == 0 and prod["drain_timeout_s"] == 14400
    dev = rendered("dev")["ansible/group_vars/all/rollout.yml"]["aiinfra_rollout"]
    assert dev["serial"] == [1, 32]


def test_etc_hosts_has_every_host_once_at_its_management_address():
    cluster = load_stack("prod").cluster
    lines = rendered("prod")["hosts/etc-hosts"].splitlines()
    pairs = dict(reversed(line.split()) for line in lines)
    assert len(lines) == len(pairs) == len(cluster.hosts) == 522
    for name, host in cluster.hosts.items():
        assert pairs[name] == host.management_address
    assert pairs["gpu123"] == "10.0.4.99"
    mgmt = ipaddress.IPv4Network(cluster.blueprint.networks.management.cidr)
    assert all(ipaddress.IPv4Address(a) in mgmt for a in pairs.values())


def test_the_committed_manifests_hold_these_files():
    for path, text in render_host_vars(load_stack("prod").cluster, load_stack("prod").plan).items():
        assert (ROOT / "manifests" / "prod" / path).read_text() == (text if text.endswith("\n") else text + "\n")


def test_slurm_vars_without_slurm_keep_the_pyxis_path_and_null_the_cluster_values():
    from aiinfra.pipeline import build_data

    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["aiinfra:cluster"]
    del raw["slurm"]
    raw["versions"].pop("slurm", None)
    for group in raw["node_groups"].values() if isinstance(raw["node_groups"], dict) else raw["node_groups"]:
        if group.get("scheduler") == "slurm":
            group["scheduler"] = "kubernetes"
        group["roles"] = [r for r in group.get("roles", []) if not r.startswith("slurm")]
    built = build_data(raw, "x.yaml", "dev")
    out = yaml.safe_load(render_host_vars(built.cluster, built.plan)["ansible/group_vars/all/slurm.yml"])
    with_slurm = rendered("dev")["ansible/group_vars/all/slurm.yml"]
    assert out["aiinfra_slurm_pyxis_plugin"] == with_slurm["aiinfra_slurm_pyxis_plugin"]
    assert out["aiinfra_slurm_pyxis_plugin"].endswith("/spank_pyxis.so")  # container_runtime installs it
    assert out["aiinfra_slurm_cluster_name"] is None and with_slurm["aiinfra_slurm_cluster_name"] == "dev"
    assert out["aiinfra_slurm_accounting"] is None and out["aiinfra_slurm_restart_settings"] == []
