"""The host roles converge for real on a test host made on this machine, twice.

The host is a Debian bookworm tree (debootstrap, cached) entered with chroot through the test
connection plugin; its variables are prod's gpu001 (plus subnet manager duties), from the rendered
inventory. Tasks tagged hardware, nvidia_repo or lustre_repo are skipped; every *_live is false
(no daemon starts, no kernel setting is applied). Fakes of nvidia-smi, ibstat, lfs, dcgmi and nvme
on the tree's PATH answer the checks: healthy for the converges, broken for the failing run.
One converge of all roles, then the idempotence run, then one run of every role's checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import load_stack

from .ansible_run import run_playbook
from .chroot_host import chroot_test_marks, host_tree, install_fake
from .inventory import mini_inventory

HERE = Path(__file__).resolve().parent
HOST = "gpu001"
SKIP_TAGS = "hardware,nvidia_repo,lustre_repo"

pytestmark = chroot_test_marks()


@pytest.fixture(scope="module")
def testhost(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("converge")
    with host_tree(tmp / "host") as tree:
        yield from _prepare(tmp, tree)


def _prepare(tmp: Path, tree: Path):
    for fake in sorted((HERE / "fakes").iterdir()):
        install_fake(tree, fake.name, fake.read_text())
    (tree / "etc/aiinfra-test").mkdir(parents=True, exist_ok=True)
    mounts = tree / "etc/aiinfra-test/mounts"
    mounts.write_text("10.2.255.1@o2ib:10.2.255.2@o2ib:/aifs /lustre lustre rw,flock,lazystatfs,noatime 0 0\n")
    inventory = tmp / "inventory.yml"
    inventory.write_text(mini_inventory(load_stack("prod"), [HOST], {HOST: {
        "ansible_connection": "aiinfra_chroot", "ansible_host": str(tree)}}))
    overrides = {
        **{f"{role}_live": False for role in ("common", "nvidia_driver", "infiniband", "lustre_client", "nvmeof",
                                               "container_runtime", "dcgm")},
        "aiinfra_project_root": str(HERE.parents[1]),
        "infiniband_stack": "inbox",                     # Debian's rdma-core: no vendor repository here
        "infiniband_subnet_managers": [HOST, "mgmt01"],  # exercise opensm's configuration too
        "lustre_client_mounts_file": "/etc/aiinfra-test/mounts",
        "dcgm_exporter_enabled": False,                  # its binary comes from a site artifact store
    }
    extra = tmp / "test-vars.yml"
    extra.write_text(yaml.safe_dump(overrides))
    yield tree, inventory, extra


@pytest.fixture(scope="module")
def converged(testhost):
    tree, inventory, extra = testhost
    first = run_playbook(HERE / "converge.yml", inventory, "-e", f"@{extra}", "--skip-tags", SKIP_TAGS)
    assert first.rc == 0, first.tail()
    return first


def test_first_converge_configures_the_host(converged, testhost):
    tree = testhost[0]
    assert converged.stats(HOST)["failed"] == 0 and converged.stats(HOST)["changed"] > 20
    hosts = (tree / "etc/hosts").read_text()
    assert "10.0.4.99 gpu123" in hosts and "10.0.0.10 mgmt01" in hosts
    assert "memlock    unlimited" in (tree / "etc/security/limits.d/90-aiinfra-memlock.conf").read_text()
    assert "ib-mlx5_8:" in (tree / "etc/netplan/60-aiinfra-ipoib.yaml").read_text()
    assert 'networks="o2ib0(ib-mlx5_8)"' in (tree / "etc/modprobe.d/aiinfra-lustre.conf").read_text()
    assert "--host-traddr=10.2.3.233" in (tree / "etc/nvme/discovery.conf").read_text()
    assert "sm_priority 15" in (tree / "etc/opensm/opensm.conf").read_text()
    # units enabled as systemd would at boot (symlinks), though no daemon runs in the tree
    wants = {p.name for p in (tree / "etc/systemd/system").glob("*.wants/*")}
    assert {"lustre.mount", "aiinfra-gpu-health.timer", "aiinfra-cpu-governor.service"} <= wants
    assert "nvmf-autoconnect.service" in wants


def test_second_converge_changes_nothing(converged, testhost):
    tree, inventory, extra = testhost
    second = run_playbook(HERE / "converge.yml", inventory, "-e", f"@{extra}", "--skip-tags", SKIP_TAGS)
    assert second.rc == 0, second.tail()
    assert second.changed_tasks(HOST) == []
    assert second.stats(HOST)["changed"] == 0


def test_every_check_fails_with_its_reason_on_broken_hardware(converged, testhost):
    tree, inventory, extra = testhost
    (tree / "etc/aiinfra-test/broken").write_text("")
    mounts = tree / "etc/aiinfra-test/mounts"
    mounts.write_text("tmpfs /run tmpfs rw 0 0\n")
    out = inventory.parent / "failures.json"
    try:
        r = run_playbook(HERE / "verify-failing.yml", inventory, "-e", f"@{extra}", "-e", f"out={out}")
    finally:
        (tree / "etc/aiinfra-test/broken").unlink()
        mounts.write_text("10.2.255.1@o2ib:10.2.255.2@o2ib:/aifs /lustre lustre rw 0 0\n")
    assert r.rc == 0, r.tail()
    failures = json.loads(out.read_text())
    assert set(failures) == {"nvidia_driver", "infiniband", "lustre_client", "nvmeof", "dcgm"}, failures
    assert "shows 7 GPU(s) with driver 570.133.20" in failures["nvidia_driver"]
    assert "declares 8 GPUs" in failures["nvidia_driver"]
    assert "mlx5_3: port 1 runs at 200 Gb/s, the blueprint declares 400" in failures["infiniband"]
    assert "mlx5_5: port 1 is Down" in failures["infiniband"]
    assert "aifs is not mounted at /lustre" in failures["lustre_client"]
    assert "scratch02: no live rdma path" in failures["nvmeof"]
    assert "GPU 3: Failure" in failures["dcgm"]
