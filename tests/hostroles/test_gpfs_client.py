"""The gpfs_client role for real on a test host made on this machine, with stand-ins of IBM Storage
Scale's mm commands.

As test_converge.py: a Debian bookworm tree (debootstrap, cached) entered with chroot; its variables
are gpu01's in the gpfs variant of dev (tests/gpfs_variant.py), from the rendered inventory. No
Storage Scale repository is reachable here: the tag gpfs_repo (repository, packages, compiler and
kernel headers) is skipped, and /usr/lpp/mmfs/bin holds stand-ins (tests/hostroles/gpfs_fakes/) that
keep the cluster's state in /etc/aiinfra-test/gpfs. Everything else runs for real, live: the
portability layer build, the join through the admin node (the test host is its own admin node),
mmstartup, mmmount, the checks, the idempotence run, a reinstalled host, and the checks failing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpfs_variant import build_gpfs_variant

from .ansible_run import run_playbook
from .chroot_host import chroot_test_marks, host_tree
from .inventory import mini_inventory

HERE = Path(__file__).resolve().parent
HOST = "gpu01"
SKIP_TAGS = "gpfs_repo"
STATE = "etc/aiinfra-test/gpfs"
# commands that change the node or the cluster, in the order the role runs them
CHANGING = ("mmbuildgpl", "mmaddnode", "mmchlicense", "mmsdrrestore", "mmstartup", "mmmount")

pytestmark = chroot_test_marks()


@pytest.fixture(scope="module")
def testhost(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpfs")
    built = build_gpfs_variant(tmp)
    gpfs = built.cluster.blueprint.storage.gpfs
    with host_tree(tmp / "host") as tree:
        bindir = tree / "usr/lpp/mmfs/bin"
        bindir.mkdir(parents=True)
        for fake in sorted((HERE / "gpfs_fakes").iterdir()):
            (bindir / fake.name).write_text(fake.read_text())
            (bindir / fake.name).chmod(0o755)
        state = tree / STATE
        state.mkdir(parents=True)
        (state / "cluster_name").write_text(gpfs.cluster_name + "\n")
        (state / "kernel").write_text(built.cluster.blueprint.versions.kernel + "\n")
        (state / "mountpoint").write_text(gpfs.mountpoint + "\n")
        (state / "log").write_text("")
        (tree / "etc/aiinfra-test/gpfs-mounts").write_text("tmpfs /run tmpfs rw 0 0\n")
        inventory = tmp / "inventory.yml"
        inventory.write_text(mini_inventory(built, [HOST], {HOST: {
            "ansible_connection": "aiinfra_chroot", "ansible_host": str(tree)}}))
        extra = tmp / "test-vars.yml"
        extra.write_text(yaml.safe_dump({
            "gpfs_client_repo_url": "http://repo.invalid/storage-scale/5.2.3.1/gpfs_debs",  # tag gpfs_repo skipped
            "gpfs_client_admin_node": HOST,  # the test host is its own admin node (same tree)
            "gpfs_client_mounts_file": "/etc/aiinfra-test/gpfs-mounts",
            "gpfs_client_start_timeout_s": 10,
        }))
        yield tree, inventory, extra, built


def _converge(testhost):
    tree, inventory, extra, _ = testhost
    return run_playbook(HERE / "gpfs-converge.yml", inventory, "-e", f"@{extra}", "--skip-tags", SKIP_TAGS)


def _changing_calls(tree: Path, since: int = 0) -> list[str]:
    lines = (tree / STATE / "log").read_text().splitlines()[since:]
    return [line.strip() for line in lines if line.split()[0] in CHANGING]


@pytest.fixture(scope="module")
def converged(testhost):
    first = _converge(testhost)
    assert first.rc == 0, first.tail()
    return first


def test_first_converge_builds_joins_starts_and_mounts(testhost, converged):
    tree, _, _, built = testhost
    gpfs = built.cluster.blueprint.storage.gpfs
    assert _changing_calls(tree) == ["mmbuildgpl", f"mmaddnode -N {HOST}:client",
                                     f"mmchlicense client --accept -N {HOST}", "mmstartup", f"mmmount {gpfs.fsname}"]
    kernel = built.cluster.blueprint.versions.kernel
    assert (tree / f"lib/modules/{kernel}/extra/mmfs26.ko").exists()
    assert (tree / STATE / "members").read_text().split() == [HOST]
    mounts = (tree / "etc/aiinfra-test/gpfs-mounts").read_text()
    assert f"{gpfs.fsname} {gpfs.mountpoint} gpfs " in mounts


def test_second_converge_changes_nothing(testhost, converged):
    tree = testhost[0]
    before = len((tree / STATE / "log").read_text().splitlines())
    second = _converge(testhost)
    assert second.rc == 0, second.tail()
    assert second.changed_tasks(HOST) == [] and second.stats(HOST)["changed"] == 0
    assert _changing_calls(tree, before) == []


def test_a_reinstalled_host_gets_its_configuration_back(testhost, converged):
    """The cluster still lists the node: mmsdrrestore from the admin node, no second mmaddnode."""
    tree, _, _, built = testhost
    kernel = built.cluster.blueprint.versions.kernel
    for path in ("var/mmfs/gen/mmsdrfs", f"{STATE}/started", f"lib/modules/{kernel}/extra/mmfs26.ko"):
        (tree / path).unlink()
    (tree / "etc/aiinfra-test/gpfs-mounts").write_text("tmpfs /run tmpfs rw 0 0\n")
    before = len((tree / STATE / "log").read_text().splitlines())
    r = _converge(testhost)
    assert r.rc == 0, r.tail()
    assert _changing_calls(tree, before) == ["mmbuildgpl", f"mmsdrrestore -p {HOST}", "mmstartup",
                                              f"mmmount {built.cluster.blueprint.storage.gpfs.fsname}"]
    assert (tree / STATE / "members").read_text().split() == [HOST]


@pytest.mark.parametrize("case", ["down", "other-cluster", "not-mounted"])
def test_each_check_fails_with_its_reason(testhost, converged, case):
    tree, inventory, extra, built = testhost
    gpfs = built.cluster.blueprint.storage.gpfs
    state, mounts = tree / STATE, tree / "etc/aiinfra-test/gpfs-mounts"
    saved = mounts.read_text()
    if case == "down":
        (state / "broken").write_text("")
    elif case == "other-cluster":
        (state / "cluster_name").write_text("other.example.org\n")
    else:
        mounts.write_text("tmpfs /run tmpfs rw 0 0\n")
    out = inventory.parent / f"failures-{case}.json"
    try:
        r = run_playbook(HERE / "gpfs-verify.yml", inventory, "-e", f"@{extra}", "-e", f"out={out}")
    finally:
        (state / "broken").unlink(missing_ok=True)
        (state / "cluster_name").write_text(gpfs.cluster_name + "\n")
        mounts.write_text(saved)
    assert r.rc == 0, r.tail()
    message = json.loads(out.read_text())["gpfs_client"]
    expected = {
        "down": f"{HOST}: GPFS is down on this node",
        "other-cluster": f"belongs to cluster 'other.example.org', the blueprint says {gpfs.cluster_name}",
        "not-mounted": f"{gpfs.fsname} is not mounted at {gpfs.mountpoint} (type gpfs)",
    }[case]
    assert expected in message, message

