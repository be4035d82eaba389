"""``aiinfra fabric check``'s text: one row per SU and only the failures, folded; --json keeps every node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ClusterShell.NodeSet import NodeSet

from conftest import ROOT

SAMPLES = ROOT / "tests" / "training" / "fixtures" / "nccl"
TESTS = ("all_reduce_perf", "all_gather_perf", "alltoall_perf")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, list[str], list[str]]:
    """Per-node outputs of 40 prod nodes (su01 whole, 8 of su02) made from the samples; gpu035 and
    gpu036 lost rail mlx5_5 (the failing sample of gpu003), gpu040 has no all-to-all result."""
    folder = tmp_path_factory.mktemp("nccl")
    hosts = [f"gpu{i:03d}" for i in range(1, 41)]
    broken = ["gpu035", "gpu036"]
    for host in hosts:
        for test in TESTS:
            if host == "gpu040" and test == "alltoall_perf":
                continue
            sample, name = (SAMPLES / "failing", "gpu003") if host in broken else (SAMPLES / "passing", "gpu001")
            text = (sample / f"{test}.node.{name}.out").read_text().replace(name, host)
            (folder / f"{test}.node.{host}.out").write_text(text)
    return folder, hosts, broken


def test_text_is_a_row_per_su_and_the_failures_folded(aiinfra, results):
    folder, hosts, broken = results
    r = aiinfra("fabric", "check", "--stack", "prod", str(folder))
    assert r.code == 1
    lines = r.stdout.splitlines()
    assert len(lines) < 20, r.stdout  # 40 nodes: not 7 lines each
    su_rows = {line.split()[0]: line.split()[1:4] for line in lines if line.split()[:1] in (["su01"], ["su02"])}
    assert su_rows == {"su01": ["32", "32", "0"], "su02": ["8", "5", "3"]}
    failed = lines[lines.index("failed:") + 1:]
    assert f"  {NodeSet.fromlist(broken)} (su02): rail HCA(s) not in use: mlx5_5" in failed
    assert any(line.startswith("  gpu040 (su02): no per-node alltoall_perf result") for line in failed)
    passing = [h for h in hosts if h not in broken and h != "gpu040"]
    assert "37 node(s) passed, 3 failed" in r.stdout
    # passing nodes are named only in the resume command
    assert all(h not in r.stdout.replace(str(NodeSet.fromlist(passing)), "") for h in ["gpu001", "gpu017", "gpu033"])
    # it fits a terminal of 80 columns (the commands to paste are one line each)
    assert all(len(line) <= 80 for line in lines if "scontrol" not in line), r.stdout
    assert 'state=drain reason="aiinfra fabric check failed"' in r.stderr and "gpu[035-036,040]" in r.stderr


def test_json_still_lists_every_node(aiinfra, results):
    folder, hosts, broken = results
    r = aiinfra("fabric", "check", "--stack", "prod", "--json", str(folder))
    data = json.loads(r.stdout)
    assert r.code == 1 and [n["node"] for n in data["nodes"]] == hosts
    assert sorted(n["node"] for n in data["nodes"] if not n["passed"]) == [*broken, "gpu040"]


def test_su_runs_are_counted_in_their_su_and_partition_runs_listed(aiinfra, tmp_path):
    r = aiinfra("fabric", "check", "--stack", "prod", str(SAMPLES / "passing"))
    assert r.code == 0
    row = next(line.split() for line in r.stdout.splitlines() if line.startswith("su01"))
    su_runs = len(list((SAMPLES / "passing").glob("*.su.su01.out")))
    assert su_runs and row[-1] == f"{su_runs}/{su_runs}"
    assert "failed:" not in r.stdout and "runs across SUs" not in r.stdout
    sample = (SAMPLES / "passing" / "all_reduce_perf.su.su01.out").read_text()
    assert "scope=su target=su01" in sample
    (tmp_path / "wide.out").write_text(sample.replace("scope=su target=su01", "scope=partition target=train"))
    r = aiinfra("fabric", "check", "--stack", "prod", str(SAMPLES / "passing"), str(tmp_path / "wide.out"))
    lines = r.stdout.splitlines()
    wide = lines[lines.index("runs across SUs:") + 1]
    assert wide.startswith("  train all_reduce_perf, 4 nodes: busbw ") and wide.endswith(" pass")
    row = next(line.split() for line in lines if line.startswith("su01"))
    assert row[-1] == f"{su_runs}/{su_runs}"
