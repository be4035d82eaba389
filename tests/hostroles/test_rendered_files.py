"""Per-host files of the host roles (IPoIB, LNet, the Lustre mount unit, NVMe-oF discovery, opensm),
rendered by the roles' own templates from prod's inventory, checked against prod's blueprint."""

from __future__ import annotations

import configparser
import json
import shutil
from pathlib import Path

import pytest
import yaml

from aiinfra.pipeline import Built
from conftest import load_stack

from .ansible_run import ansible_playbook, run_playbook
from .inventory import mini_inventory

HERE = Path(__file__).resolve().parent
HOSTS = ["gpu123", "gpu500", "mgmt01", "mgmt02"]

pytestmark = pytest.mark.skipif(shutil.which(ansible_playbook()) is None and not Path(ansible_playbook()).exists(),
                                reason="ansible-playbook is not installed")


def render_host_files(built: Built, hosts: list[str], tmp: Path, host_overrides: dict | None = None) -> Path:
    """The roles' per-host files of ``hosts`` (from ``built``'s inventory), rendered by the roles' own
    templates into <returned dir>/<host>/ (see render-host-files.yml)."""
    inventory = tmp / "inventory.yml"
    inventory.write_text(mini_inventory(built, hosts, host_overrides))
    out = tmp / "out"
    out.mkdir()
    r = run_playbook(HERE / "render-host-files.yml", inventory, "-e", f"out={out}")
    assert r.rc == 0, r.tail()
    for host in hosts:  # the playbook's <host>.json: file name -> text, written out as <host>/<file>
        (out / host).mkdir()
        for name, text in json.loads((out / f"{host}.json").read_text()).items():
            (out / host / name).write_text(text)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    return render_host_files(load_stack("prod"), HOSTS, tmp_path_factory.mktemp("hostfiles"))


@pytest.fixture(scope="module")
def cluster():
    return load_stack("prod").cluster


@pytest.mark.parametrize("name", ["gpu123", "gpu500"])
def test_netplan_gives_every_rail_and_the_storage_port_its_planned_address(files, cluster, name):
    host = cluster.hosts[name]
    net = yaml.safe_load((files / name / "netplan.yaml").read_text())["network"]["ethernets"]
    want = {f"ib-{p.hca}": f"{p.ipoib_address}/{p.ipoib_prefix}" for p in host.rails}
    want["ib-mlx5_8"] = f"{host.storage_address}/16"
    assert {k: v["addresses"] for k, v in net.items()} == {k: [v] for k, v in want.items()}
    assert len(want) == 9
    assert all(v["infiniband-mode"] == "datagram" and v["mtu"] == 4092 for v in net.values())


def test_gpu123_addresses_are_the_documented_ones(files):
    net = yaml.safe_load((files / "gpu123" / "netplan.yaml").read_text())["network"]["ethernets"]
    assert net["ib-mlx5_0"]["addresses"] == ["10.64.4.99/16"]
    assert net["ib-mlx5_7"]["addresses"] == ["10.71.4.99/16"]
    assert net["ib-mlx5_8"]["addresses"] == ["10.2.4.99/16"]


def test_networkmanager_keyfiles_match_netplan(files, cluster):
    host = cluster.hosts["gpu123"]
    for port in host.rails:
        kf = configparser.ConfigParser(interpolation=None)
        kf.read_string((files / "gpu123" / f"{port.hca}.nmconnection").read_text())
        assert kf["connection"]["interface-name"] == f"ib-{port.hca}"
        assert kf["ipv4"]["address1"] == f"{port.ipoib_address}/{port.ipoib_prefix}"


def test_mgmt_hosts_have_only_their_storage_port(files, cluster):
    net = yaml.safe_load((files / "mgmt01" / "netplan.yaml").read_text())["network"]["ethernets"]
    assert net == {"ib-mlx5_0": net["ib-mlx5_0"]}
    assert net["ib-mlx5_0"]["addresses"] == [f"{cluster.hosts['mgmt01'].storage_address}/16"]


def test_lnet_runs_o2ib0_on_the_storage_port(files, cluster):
    text = (files / "gpu123" / "lustre.conf").read_text()
    assert 'options lnet networks="o2ib0(ib-mlx5_8)"' in text.splitlines()
    assert 'options lnet networks="o2ib0(ib-mlx5_0)"' in (files / "mgmt01" / "lustre.conf").read_text()


def test_the_mount_unit_mounts_aifs_with_the_declared_options(files, cluster):
    lustre = cluster.blueprint.storage.lustre
    unit = configparser.ConfigParser(interpolation=None)
    unit.read_string((files / "gpu123" / "lustre.mount").read_text())
    assert unit["Mount"]["What"] == ":".join(lustre.mgs_nids) + ":/" + lustre.fsname
    assert unit["Mount"]["Where"] == lustre.mountpoint
    assert unit["Mount"]["Type"] == "lustre"
    assert unit["Mount"]["Options"].split(",") == [*lustre.mount_options, "_netdev"]
    assert (files / "gpu123" / "mount-unit-name").read_text().strip() == "lustre.mount"


def test_nvmeof_discovery_connects_every_target_from_the_storage_port(files, cluster):
    host = cluster.hosts["gpu123"]
    lines = [ln for ln in (files / "gpu123" / "discovery.conf").read_text().splitlines() if not ln.startswith("#")]
    targets = cluster.blueprint.storage.nvmeof.targets
    assert len(lines) == len(targets)
    for line, target in zip(lines, targets, strict=True):
        opts = dict(opt.lstrip("-").split("=", 1) for opt in line.split())
        assert opts["transport"] == "rdma"
        assert opts["traddr"] == target.address and opts["trsvcid"] == str(target.port)
        assert opts["host-traddr"] == host.storage_address


def test_opensm_priorities_follow_the_subnet_manager_order(files):
    def priority(name: str) -> int:
        line = next(ln for ln in (files / name / "opensm.conf").read_text().splitlines() if ln.startswith("sm_priority"))
        return int(line.split()[1])

    assert priority("mgmt01") == 15 and priority("mgmt02") == 14
    assert not (files / "gpu123" / "opensm.conf").exists()
    parts = (files / "mgmt01" / "partitions.conf").read_text()
    assert "Default=0x7fff, ipoib, defmember=full : ALL=full ;" in parts


def test_kernel_command_line_and_sysctl(files):
    grub = (files / "gpu123" / "grub.cfg").read_text()
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT} intel_iommu=on iommu=pt"' in grub
    sysctl = dict(line.split(" = ") for line in (files / "gpu123" / "sysctl.conf").read_text().splitlines()
                  if not line.startswith("#"))
    assert sysctl["net.ipv4.conf.all.arp_ignore"] == "1"
    assert int(sysctl["net.ipv4.neigh.default.gc_thresh3"]) >= 522
