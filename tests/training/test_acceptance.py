"""nccl-tests acceptance: pass marks from the catalog, the parser on sample outputs, the gate and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiinfra.deploy.acceptance import gate, parse_output, read_results
from aiinfra.plan.acceptance import EFFICIENCY, GATE_MIN_BYTES, expected_busbw_gb_s, threshold_gb_s
from aiinfra.plan.training import LINK_EFFICIENCY
from conftest import load_stack, render

SAMPLES = Path(__file__).parent / "fixtures" / "nccl"


@pytest.fixture(scope="module")
def prod():
    return load_stack("prod").cluster


def test_expected_bandwidth_from_the_catalog(prod):
    group = prod.groups["gpu-train"]
    assert expected_busbw_gb_s(prod, group, "all_reduce_perf", 1) == 450  # H100 NVLink 900 GB/s both ways
    assert expected_busbw_gb_s(prod, group, "all_reduce_perf", 32) == 400  # 8 x NDR400 = 8 x 50 GB/s
    assert expected_busbw_gb_s(prod, group, "all_gather_perf", 480) == 400
    # all-to-all across 2 nodes: 400/8 x 15/8
    assert expected_busbw_gb_s(prod, group, "alltoall_perf", 2) == pytest.approx(50 * 15 / 8)
    assert EFFICIENCY == LINK_EFFICIENCY == 0.8
    assert threshold_gb_s(prod, group, "all_reduce_perf", 1) == 360.0
    assert threshold_gb_s(prod, group, "all_reduce_perf", 32) == 320.0


def test_parser_reads_ranks_hosts_hcas_and_rows():
    (run,) = parse_output((SAMPLES / "passing" / "all_reduce_perf.node.gpu001.out").read_text(), "x")
    assert (run.test, run.scope, run.target, run.ranks, run.nodes) == ("all_reduce_perf", "node", "gpu001", 8, ["gpu001"])
    assert run.hcas["gpu001"] == {f"mlx5_{i}" for i in range(8)}
    assert len(run.rows) == 32 and run.largest.size == 16 * 2**30 >= GATE_MIN_BYTES
    assert 470 < run.largest.busbw_out < 481 and run.largest.wrong == 0


def test_parser_without_marker_takes_the_collective_from_the_file_name():
    text = (SAMPLES / "passing" / "alltoall_perf.su.su01.out").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("# aiinfra-acceptance"))
    (run,) = parse_output(text, "results/alltoall_perf-1234.out")
    assert run.test == "alltoall_perf" and run.scope is None and run.ranks == 32 and len(run.nodes) == 4


def test_passing_results_pass_every_node(prod):
    nodes, runs = gate(prod, read_results([SAMPLES / "passing"]))
    assert [n.node for n in nodes] == ["gpu001", "gpu002", "gpu003", "gpu004"]
    assert all(n.passed for n in nodes), [n.problems for n in nodes]
    assert {v.scope for v in runs} == {"node", "su"} and all(v.passed for v in runs)


def test_failing_results_catch_the_degraded_rail_and_the_weak_nvlink(prod):
    nodes, runs = gate(prod, read_results([SAMPLES / "failing"]))
    verdict = {n.node: n for n in nodes}
    assert verdict["gpu001"].passed and verdict["gpu002"].passed
    # gpu003: rail 5 is down; NCCL spread its channels over 7 rails and the SU's all-reduce stays above
    # the bandwidth mark, so only the HCA check catches it
    assert not verdict["gpu003"].passed and verdict["gpu003"].hcas == "7/8"
    assert verdict["gpu003"].problems == ["rail HCA(s) not in use: mlx5_5"]
    su_allreduce = next(v for v in runs if v.scope == "su" and v.test == "all_reduce_perf")
    assert su_allreduce.passed and su_allreduce.busbw_gb_s < 372
    # gpu004: NVLink degraded
    assert not verdict["gpu004"].passed
    assert verdict["gpu004"].problems[0].startswith("all_reduce_perf: busbw 212")


def test_wrong_results_small_messages_and_unknown_hosts_fail(prod):
    text = (SAMPLES / "passing" / "all_gather_perf.node.gpu002.out").read_text()
    lines = text.splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith(" 17179869184"))
    parts = lines[last].rsplit("0", 1)
    lines[last] = parts[0] + "3" + parts[1]  # in-place #wrong = 3
    (run,) = parse_output("\n".join(lines), "x")
    nodes, _ = gate(prod, [run])
    assert any("data corruption" in p for p in nodes[0].problems)
    small = "\n".join(line for line in text.splitlines()
                      if not (line.split() and line.split()[0].isdigit() and int(line.split()[0]) >= GATE_MIN_BYTES))
    nodes, _ = gate(prod, parse_output(small, "x"))
    assert any("bandwidth not measured" in p for p in nodes[0].problems)
    nodes, _ = gate(prod, parse_output(text.replace("gpu002", "gpu999"), "x"))
    assert nodes[0].problems == ["not in the blueprint"]


def test_cli_passes_and_prints_the_resume_command(aiinfra):
    r = aiinfra("fabric", "check", "--stack", "prod", str(SAMPLES / "passing"))
    assert r.code == 0, r.stdout + r.stderr
    assert "scontrol update nodename=gpu[001-004] state=resume" in r.stdout
    assert "4 node(s) passed, 0 failed" in r.stdout


def test_cli_fails_and_resumes_only_the_nodes_that_passed(aiinfra):
    r = aiinfra("fabric", "check", "--stack", "prod", str(SAMPLES / "failing"))
    assert r.code == 1
    assert "scontrol update nodename=gpu[001-002] state=resume" in r.stdout
    assert 'scontrol update nodename=gpu[003-004] state=drain reason="aiinfra fabric check failed"' in r.stderr
    j = aiinfra("fabric", "check", "--stack", "prod", "--json", *map(str, (SAMPLES / "failing").glob("*.out")))
    data = json.loads(j.stdout)
    assert j.code == 1 and not data["ok"] and data["resume"].endswith("gpu[001-002] state=resume")
    assert aiinfra("fabric", "check", "--stack", "prod", "/nonexistent").code == 2


def test_acceptance_jobs_rendered_per_partition(prod):
    out = render(load_stack("prod"), only=["acceptance"])
    assert sorted(out) == ["acceptance/train/nccl-tests.sbatch", "acceptance/train/thresholds.json"]
    script = out["acceptance/train/nccl-tests.sbatch"]
    assert "[su15]='gpu[449-480]'" in script and "all_reduce_perf all_gather_perf alltoall_perf" in script
    assert "export NCCL_DEBUG=INFO" in script
    marks = json.loads(out["acceptance/train/thresholds.json"])["groups"][0]["min_busbw_gb_s"]
    assert marks["node"]["all_reduce_perf"] == 360.0 and marks["su"]["nodes"] == 32
