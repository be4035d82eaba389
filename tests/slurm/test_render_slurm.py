"""manifests/<env>/slurm/ against the blueprint: what slurm.conf, gres.conf, topology.conf and
slurmdbd.conf must say, and that the committed tree is what a fresh render gives."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from ClusterShell.NodeSet import NodeSet

from aiinfra.pipeline import build_data, build_file
from aiinfra.render.slurm import (
    cores_of_gpu,
    gpu_type,
    nvlink_links,
    real_memory_mib,
    render_slurm,
    slurm_model,
)
from conftest import ROOT, load_stack

TESTBED = ROOT / "tests" / "fixtures" / "slurm-testbed" / "stacks" / "Pulumi.testbed.yaml"


def conf_lines(text: str, key: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"{key}=")]


def settings(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split("#")[0].split())


@pytest.fixture(scope="module")
def prod_files() -> dict[str, str]:
    return {p.relative_to(ROOT / "manifests" / "prod").as_posix(): p.read_text()
            for p in (ROOT / "manifests" / "prod" / "slurm").rglob("*") if p.is_file()}


@pytest.mark.parametrize("env", ["prod", "dev"])
def test_committed_tree_is_a_fresh_render(env):
    built = load_stack(env)
    for path, text in render_slurm(built.cluster, built.plan).items():
        on_disk = ROOT / "manifests" / env / path
        assert on_disk.is_file(), f"{path} missing: run aiinfra render --stack {env}"
        assert on_disk.read_text() == text, f"{path} stale: run aiinfra render --stack {env}"


def test_node_lines_fold_the_slurm_gpu_nodes(prod_files):
    slurm_conf = prod_files["slurm/slurm.conf"]
    nodes = conf_lines(slurm_conf, "NodeName")
    assert nodes == [
        "NodeName=gpu[001-480] CPUs=224 Sockets=2 CoresPerSocket=56 ThreadsPerCore=2 "
        f"RealMemory={real_memory_mib(2 * 2**40)} Gres=gpu:h100:8 State=UNKNOWN"
    ]


def test_every_slurm_node_appears_exactly_once():
    cluster = load_stack("prod").cluster
    text = render_slurm(cluster, load_stack("prod").plan)["slurm/slurm.conf"]
    seen = [h for line in conf_lines(text, "NodeName") for h in NodeSet(settings(line)["NodeName"])]
    want = [h for g in cluster.groups_for_scheduler("slurm") for h in g.hosts]
    assert sorted(seen) == sorted(want) and len(seen) == len(set(seen))
    serving = set(cluster.groups["gpu-serve"].hosts)
    assert not serving & set(seen), "Kubernetes nodes must not be Slurm nodes"


def test_real_memory_leaves_ram_to_the_os():
    two_tib = 2 * 2**40
    assert real_memory_mib(two_tib) == (two_tib - int(two_tib * 0.05)) // 2**20
    assert real_memory_mib(4 * 2**30) == 2048  # at least 2 GiB stay with the OS


def test_controllers_accounting_and_memory_defaults(prod_files):
    text = prod_files["slurm/slurm.conf"]
    assert conf_lines(text, "SlurmctldHost") == ["SlurmctldHost=mgmt01", "SlurmctldHost=mgmt02"]
    assert conf_lines(text, "StateSaveLocation") == ["StateSaveLocation=/lustre/slurm/statesave"]
    assert conf_lines(text, "SelectType") == ["SelectType=select/cons_tres"]
    assert conf_lines(text, "GresTypes") == ["GresTypes=gpu"]
    assert conf_lines(text, "AccountingStorageHost") == ["AccountingStorageHost=mgmt03"]
    assert conf_lines(text, "AccountingStorageTRES") == ["AccountingStorageTRES=gres/gpu,gres/gpu:h100"]
    assert conf_lines(text, "TopologyPlugin") == ["TopologyPlugin=topology/tree"]
    assert conf_lines(text, "HealthCheckProgram") == ["HealthCheckProgram=/usr/local/sbin/aiinfra-nodecheck"]
    part = settings(conf_lines(text, "PartitionName")[0])
    assert part["Nodes"] == "gpu[001-480]" and part["Default"] == "YES" and part["MaxTime"] == "14-00:00:00"
    assert int(part["DefMemPerGPU"]) == real_memory_mib(2 * 2**40) // 8
    # a job that names no memory does not take the node: one memory default per partition, never
    # two (DefMemPerCPU, DefMemPerGPU and DefMemPerNode are mutually exclusive: slurm.conf(5))
    assert not conf_lines(text, "DefMemPerCPU") and not conf_lines(text, "DefMemPerGPU")
    for line in conf_lines(text, "PartitionName"):
        assert len({"DefMemPerCPU", "DefMemPerGPU", "DefMemPerNode"} & set(settings(line))) == 1, line
    assert conf_lines(text, "EnforcePartLimits") == ["EnforcePartLimits=ALL"]
    assert conf_lines(text, "PreemptType") == ["PreemptType=preempt/qos"]  # high may preempt low


def test_no_accounting_tres_without_slurmdbd():
    loaded = build_file(TESTBED)
    bp = loaded.cluster.blueprint
    groups = [g.model_copy(update={"roles": [r for r in g.roles if r != "slurmdbd"]}) for g in bp.node_groups]
    cluster = loaded.cluster
    cluster.blueprint = bp.model_copy(update={"node_groups": groups})
    from aiinfra.spec.cluster import Group

    cluster.groups = {g.name: Group(g, bp.node_types[g.type], cluster.groups[g.name].hosts) for g in groups}
    files = render_slurm(cluster, loaded.plan)
    assert "slurm/slurmdbd.conf" not in files
    text = files["slurm/slurm.conf"]
    assert not conf_lines(text, "AccountingStorageTRES")
    assert conf_lines(text, "AccountingStorageType") == ["AccountingStorageType=accounting_storage/none"]


def test_one_switch_per_slurm_su_under_the_spine(prod_files):
    cluster = load_stack("prod").cluster
    lines = conf_lines(prod_files["slurm/topology.conf"], "SwitchName")
    leaves = [settings(line) for line in lines if "Nodes" in settings(line)]
    assert len(leaves) == 15  # SU 16 is Kubernetes'
    for sw in leaves:
        su = int(sw["SwitchName"].removeprefix("su"))
        assert sorted(NodeSet(sw["Nodes"])) == sorted(cluster.hosts_in_su(su))
    assert leaves[0] == {"SwitchName": "su01", "Nodes": "gpu[001-032]"}
    assert lines[-1] == "SwitchName=spine Switches=su[01-15]"


def test_gres_types_from_the_gpu_catalog(prod_files):
    cluster = load_stack("prod").cluster
    assert gpu_type(cluster.groups["gpu-train"].gpu) == "h100"
    gres = prod_files["slurm/gres.conf"]
    assert "AutoDetect=nvml" in gres.splitlines()
    assert "NodeName=gpu[001-480] Name=gpu Type=h100 Count=8" in gres.splitlines()


def test_explicit_gres_lines_with_core_and_nvlink_affinity():
    files = render_slurm(build_file(TESTBED).cluster, build_file(TESTBED).plan)
    lines = conf_lines(files["slurm/gres.conf"], "NodeName")
    assert len(lines) == 8
    first = settings(lines[0])
    assert first == {"NodeName": "gpu[01-04]", "Name": "gpu", "Type": "h100",
                     "File": "/run/aiinfra-testbed/dev/nvidia0", "Cores": "0-1", "Links": "-1,1,1,1,1,1,1,1"}
    assert lines[0].endswith("# rail 0: mlx5_0")
    assert [cores_of_gpu(i, 8, 2, 56) for i in (0, 3, 4, 7)] == ["0-55", "0-55", "56-111", "56-111"]
    assert nvlink_links(2, 4, 2) == "0,0,-1,1"


def test_no_password_in_slurmdbd_conf(prod_files):
    dbd = prod_files["slurm/slurmdbd.conf"]
    assert not re.search(r"^\s*StoragePass", dbd, re.MULTILINE)
    assert "StorageLoc=slurm_acct_db" in dbd.splitlines()
    assert "DbdHost=mgmt03" in dbd.splitlines()
    for text in prod_files.values():
        assert not re.search(r"(?i)^\s*(storagepass|password)\s*=", text, re.MULTILINE)


def test_cgroup_and_plugstack(prod_files):
    cgroup = prod_files["slurm/cgroup.conf"].splitlines()
    for key in ("ConstrainDevices", "ConstrainCores", "ConstrainRAMSpace"):
        assert f"{key}=yes" in cgroup
    assert "include /etc/slurm/plugstack.conf.d/*.conf" in prod_files["slurm/plugstack.conf"]
    assert "spank_pyxis.so" in prod_files["slurm/plugstack.conf.d/pyxis.conf"]


def test_version_gated_options():
    prod = slurm_model(load_stack("prod").cluster)
    assert "SlurmctldParameters=enable_stepmgr" in prod.options  # 24.11
    raw = yaml.safe_load(TESTBED.read_text())["config"]["aiinfra:cluster"]
    raw["versions"]["slurm"] = "22.05"  # a release from a site repository
    raw["slurm"]["install"] = {"method": "packages"}
    old = build_data(raw, str(TESTBED), "testbed")
    assert slurm_model(old.cluster).options == []  # 22.05 knows none of them
    text = render_slurm(old.cluster, old.plan)["slurm/slurm.conf"]
    assert "enable_stepmgr" not in text
    assert "SlurmdParameters=config_overrides" in text.splitlines()


def test_health_check_expectations(prod_files):
    check = json.loads(prod_files["slurm/nodecheck.json"])
    (group,) = check["groups"]
    assert group == {"group": "gpu-train", "nodes": "gpu[001-480]", "gpus": 8, "gres": "gpu:h100:8",
                     "hcas": [f"mlx5_{i}" for i in range(8)], "hca_rate_gbps": 400, "lustre_mountpoint": "/lustre"}


def _nodecheck():
    import importlib.machinery
    import importlib.util

    path = ROOT / "roles" / "slurm" / "files" / "aiinfra-nodecheck"
    loader = importlib.machinery.SourceFileLoader("aiinfra_nodecheck", str(path))
    spec = importlib.util.spec_from_loader("aiinfra_nodecheck", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_health_check_expands_the_rendered_hostlists():
    check = _nodecheck()
    for expr in ("gpu[001-480]", "ctl01,gpu[01-04]", "gpu[001-003,007],login[1-2]"):
        assert check.expand_hostlist(expr) == list(NodeSet(expr)), expr
    config = json.loads((ROOT / "manifests" / "prod" / "slurm" / "nodecheck.json").read_text())
    assert check.expected_for(config, "gpu480")["gres"] == "gpu:h100:8"
    assert check.expected_for(config, "gpu481") is None  # Kubernetes' node: nothing to check


def test_health_check_finds_each_fault(tmp_path: Path):
    check = _nodecheck()
    expect = {"gpus": 2, "hcas": ["mlx5_0", "mlx5_1"], "hca_rate_gbps": 400, "lustre_mountpoint": "/lustre"}
    for hca, state, rate in (("mlx5_0", "4: ACTIVE", "400 Gb/sec (4X NDR)"), ("mlx5_1", "1: DOWN", "400 Gb/sec")):
        port = tmp_path / "ib" / hca / "ports" / "1"
        port.mkdir(parents=True)
        (port / "state").write_text(state)
        (port / "rate").write_text(rate)
    (tmp_path / "mounts").write_text("tmpfs /run tmpfs rw 0 0\n")
    probes = {**check.DEFAULT_PROBES, "gpu_count_command": "echo 0", "infiniband_dir": str(tmp_path / "ib"),
              "mounts_file": str(tmp_path / "mounts")}
    assert check.gpu_problems(expect, probes) == ["1 GPUs, GRES says 2"]
    assert check.hca_problems(expect, probes) == ["mlx5_1 port DOWN"]
    assert check.lustre_problems(expect, probes) == ["Lustre not mounted at /lustre"]
    (tmp_path / "ib" / "mlx5_1" / "ports" / "1" / "state").write_text("4: ACTIVE")
    (tmp_path / "ib" / "mlx5_1" / "ports" / "1" / "rate").write_text("200 Gb/sec (4X HDR)")
    assert check.hca_problems(expect, probes) == ["mlx5_1 at 200 Gb/s, expected 400"]
