"""The step-time model against the published tables it is calibrated on.

Each row of src/aiinfra/catalog/data/calibration/training_step_time.csv carries its source (paper or
page, table, row) and the published figure; the figure here is that column, never the model's.
Target: every row within 15 % of its published time. One row misses it and is held to the
error the calibration report in docs/planner.md states for it (with the reason there).
"""

from __future__ import annotations

import json

import pytest

from aiinfra.catalog.gpus import gpu
from aiinfra.plan.calibration import calibration_rows
from aiinfra.plan.training import TrainingRequest, plan_training, step_time, with_overrides

ROWS = calibration_rows()
TARGET = 0.15
#: Rows outside the target, with the bound the report gives (docs/planner.md, "Calibration").
MISSES = {
    ("mbridge2511_h100_fp8", "LLAMA3_8B"): 0.20,  # Megatron-Bridge 25.11 H100 LLAMA3_8B (FSDP): 19 % slow
}


def test_every_row_names_its_source_and_table():
    assert len(ROWS) >= 30
    assert {r.table for r in ROWS} == {
        "narayanan2021_t1", "korthikanti2022_t4", "korthikanti2022_t5", "llama3_t4", "nemo2412_h100_fp8",
        "mbridge2511_h100_fp8",
    }
    for r in ROWS:
        assert "Table" in r.source or "table" in r.source, r.source
        assert r.published > 0


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.table}:{r.row}" for r in ROWS])
def test_row_within_target_of_its_published_time(row):
    bound = MISSES.get((row.table, row.row), TARGET)
    assert abs(row.error()) <= bound, f"{row.source}: {row.error():+.1%}"


def test_narayanan_table1_conversion():
    # Narayanan et al. 2021 Table 1, 1T row: 3,072 GPUs at 163 TFLOP/s, batch 3,072, eq. 3 FLOPs:
    # 96 x 3072 x 2048 x 128 x 25600^2 x (1 + 2048/(6 x 25600) + 51200/(16 x 128 x 25600)) = 5.13e19 FLOPs,
    # so about 102.6 s per iteration.
    row = next(r for r in ROWS if r.table == "narayanan2021_t1" and r.row == "1008.0B")
    assert row.published_s == pytest.approx(102.6, rel=0.002)


def test_korthikanti_selective_recompute_costs_more_than_its_flops():
    # Korthikanti et al. 2022 Table 4 (22B): selective recomputation adds 1.3 ms to the 19.6 ms layer
    # although its FLOPs are ~5 % of the layer's: the recomputed softmax/dropout are memory-bound.
    t4 = {r.row: r for r in ROWS if r.table == "korthikanti2022_t4"}
    added = t4["selective"].predicted_s() - t4["baseline"].predicted_s()
    assert 0.5e-3 < added < 2.5e-3
    # sequence parallelism makes the layer faster (norms and dropout on 1/t of the tokens): 19.6 -> 19.0 ms
    assert t4["sequence-parallel"].predicted_s() < t4["baseline"].predicted_s()


def test_a100_throughput_rises_with_model_size():
    # Narayanan Table 1: 137 TFLOP/s per GPU at 1.7B, 163 at 1T (larger GEMMs, relatively less of the rest)
    t1 = [r for r in ROWS if r.table == "narayanan2021_t1"]
    small, large = t1[0], t1[-1]

    def tflops(r):
        return r.published_s * r.published / r.predicted_s()

    assert tflops(large) > tflops(small) * 1.05


def test_fp8_speeds_up_only_the_gemms():
    row = next(r for r in ROWS if r.table == "nemo2412_h100_fp8" and r.row == "LLAMA3-8B")
    fp8 = plan_training(with_overrides(row.request, recompute="none")).estimate.detail
    bf16 = plan_training(with_overrides(row.request, precision="bf16", recompute="none")).estimate.detail
    assert fp8 is not None and bf16 is not None
    assert fp8.gemm_s < 0.8 * bf16.gemm_s
    assert fp8.attention_s == pytest.approx(bf16.attention_s)
    assert fp8.total_s > bf16.total_s / 2


def test_mfu_overrides_the_compute_efficiency_only():
    row = next(r for r in ROWS if r.table == "nemo2412_h100_fp8" and r.row == "LLAMA2-7B")
    req: TrainingRequest = with_overrides(row.request, mfu=0.30)
    plan = plan_training(req)
    assert plan.mfu == pytest.approx(0.30, rel=1e-3)
    inputs = plan.to_dict()["time_inputs"]
    assert inputs["gemm_efficiency_fp8"]["source"] == "from mfu"
    assert inputs["overlap"]["source"] == "fitted"
    # communication and bubble are still the model's
    base = plan_training(row.request)
    assert plan.estimate.bubble_fraction == base.estimate.bubble_fraction
    assert plan.estimate.optimizer_s == pytest.approx(base.estimate.optimizer_s)
    assert inputs["gemm_efficiency_fp8"]["value"] != base.to_dict()["time_inputs"]["gemm_efficiency_fp8"]["value"]


def test_a_set_input_changes_one_thing_and_is_reported():
    row = next(r for r in ROWS if r.table == "nemo2412_h100_fp8" and r.row == "LLAMA2-7B")
    slow = with_overrides(row.request, time_inputs=(("gemm_efficiency_fp8", 0.3),))
    plan = plan_training(slow)
    d = plan.to_dict()["time_inputs"]
    assert d["gemm_efficiency_fp8"] == {"value": 0.3, "source": "set"}
    assert plan.step_time_s > plan_training(row.request).step_time_s


def test_step_json_lists_each_collective_with_bytes_algorithm_and_bandwidth():
    row = next(r for r in ROWS if r.table == "mbridge2511_h100_fp8" and r.row == "LLAMA3.1_405B")
    step = plan_training(row.request).to_dict()["step"]
    names = {c["name"]: c for c in step["collectives"]}
    assert {"tp_forward_all_gather", "cp_forward_kv_send", "pp_steady_send_recv", "dp_gradient_reduce_scatter"} <= set(names)
    tp = names["tp_forward_all_gather"]
    # TP 8 inside an HGX node: NVLink at 0.8 x 450 GB/s one direction (H100 datasheet: 900 GB/s total)
    assert tp["link"] == "nvlink" and tp["bus_bandwidth_b_s"] == pytest.approx(360e9)
    # one micro-batch's hidden states: 8,192 / CP 2 tokens x 16,384 x 2 bytes
    assert tp["bytes_per_call"] == 4096 * 16384 * 2
    for c in step["collectives"]:
        assert 0 <= c["exposed_s"] <= c["time_s"] + 1e-12


def test_nvls_all_reduce_on_h100_not_a100():
    row = next(r for r in ROWS if r.table == "korthikanti2022_t4" and r.row == "baseline")
    a100 = step_time(row.request, row.layout).to_dict()
    assert {c["algorithm"] for c in a100["collectives"] if c["group"] == "tp"} == {"ring"}
    h100 = step_time(with_overrides(row.request, gpu=gpu("h100")), row.layout).to_dict()
    assert {c["algorithm"] for c in h100["collectives"] if c["op"] == "all_reduce" and c["group"] == "tp"} == {"nvls"}


def _tp_all_reduce(gpu_name: str, tp: int = 8) -> tuple[dict, float]:
    """The TP all-reduce of Korthikanti's baseline layer (no sequence parallelism) on ``gpu_name``
    at ``tp`` GPUs, and its algorithm bandwidth (bytes / (seconds per call - latency))."""
    from dataclasses import replace

    from aiinfra.catalog.time_model import TIME_INPUTS

    row = next(r for r in ROWS if r.table == "korthikanti2022_t4" and r.row == "baseline")
    step = step_time(with_overrides(row.request, gpu=gpu(gpu_name)), replace(row.layout, tp=tp)).to_dict()
    ar = next(c for c in step["collectives"] if c["op"] == "all_reduce" and c["group"] == "tp")
    per_call = ar["time_s"] / ar["calls"] - TIME_INPUTS["collective_latency_s"].default
    return ar, ar["bytes_per_call"] / per_call


@pytest.mark.parametrize(("gpu_name", "busbw_gb_s"), [
    # 8 H100 SXM: "a peak busBw of ~480GB/s (algbw ~275GB/s)" with NVLink SHARP (S. Jeaugey, NCCL,
    # NVIDIA/nccl-tests issue #212); 8 H200 (same NVLink 4 / NVSwitch): 475 GB/s peak busbw in
    # all_reduce_perf with NCCL 2.20.3 (NVIDIA/nccl-tests issue #272)
    ("h100", 480.0),
    ("h200", 475.0),
])
def test_nvls_all_reduce_in_a_node_reaches_the_published_busbw(gpu_name, busbw_gb_s):
    ar, algbw = _tp_all_reduce(gpu_name)
    assert ar["algorithm"] == "nvls"
    # nccl-tests' bus bandwidth of an all-reduce: algbw x 2 (n - 1) / n (doc/PERFORMANCE.md), n = 8
    busbw = algbw * 2 * 7 / 8
    assert busbw == pytest.approx(busbw_gb_s * 1e9, rel=0.05)
    assert ar["bus_bandwidth_b_s"] == pytest.approx(busbw, rel=1e-6)
    assert algbw == pytest.approx(275e9, rel=0.05)


def test_two_ranks_all_reduce_on_the_ring():
    # at 2 ranks the ring moves as few bytes per GPU as NVLS and is faster (busbw ~370 GB/s on H100,
    # the same issue: "an effective NVLink bandwidth of 370GB/s ... with NCCL_ALGO=RING")
    ar, algbw = _tp_all_reduce("h100", tp=2)
    assert ar["algorithm"] == "ring"
    assert algbw * 2 * 1 / 2 == pytest.approx(370e9, rel=0.05)


def test_compute_budget_reports_6nd_beside_the_attention_term():
    row = next(r for r in ROWS if r.table == "llama3_t4" and r.row == "8192-gpus")
    d = plan_training(with_overrides(row.request, recompute="full", tokens=15.6e12)).to_dict()
    # Llama 3 paper: 405B trained on 15.6T tokens, 3.8e25 FLOPs (6ND)
    assert d["compute_budget_flops"]["6nd"] == pytest.approx(3.8e25, rel=0.01)
    assert d["compute_budget_flops"]["with_attention"] > d["compute_budget_flops"]["6nd"]


def test_assume_flag_sets_one_input_and_the_table_prints_it():
    from typer.testing import CliRunner

    from aiinfra.cli.plan import size_app

    runner = CliRunner()
    base = ["train", "--model", "llama3-8b", "--gpus", "8", "--json"]
    plain = json.loads(runner.invoke(size_app, base).stdout)
    result = runner.invoke(size_app, [*base, "--assume", "overlap=0", "--assume", "dp_overlap=0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["time_inputs"]["overlap"] == {"value": 0.0, "source": "set"}
    assert data["time_inputs"]["gemm_efficiency_bf16"]["source"] == "fitted"
    assert data["step_time_s"] >= plain["step_time_s"]
    table = runner.invoke(size_app, ["train", "--model", "llama3-8b", "--gpus", "8", "--assume", "overlap=0"])
    assert "overlap 0 (set)" in table.stdout.replace("\n", " ").replace("│", " ").replace("  ", " ")
    bad = runner.invoke(size_app, [*base, "--assume", "speed=2"])
    assert bad.exit_code == 2 and "--assume" in bad.output and "unknown step-time input" in bad.output
    bad = runner.invoke(size_app, [*base, "--assume", "overlap=2"])
    assert bad.exit_code == 2 and "between 0 and 1" in bad.output


def test_blueprint_planner_map_reaches_the_plan():
    from aiinfra.plan.training import training_request_from_job
    from aiinfra.spec.models import TrainingJob

    job = TrainingJob.model_validate({"name": "j", "model": "llama3-8b", "node_group": "g", "nodes": 1,
                                      "tokens": 1e12, "planner": {"gemm_efficiency_bf16": 0.5}})
    plan = plan_training(training_request_from_job(job, "h100-80gb", 8))
    assert plan.to_dict()["time_inputs"]["gemm_efficiency_bf16"] == {"value": 0.5, "source": "set"}
    with pytest.raises(ValueError, match="unknown step-time input"):
        TrainingJob.model_validate({"name": "j", "model": "llama3-8b", "node_group": "g", "nodes": 1,
                                    "tokens": 1e12, "planner": {"gemm": 0.5}})


def test_plan_command_assume_replans_every_training_job(aiinfra):
    base, slow = aiinfra("plan", "--stack", "prod", "--json"), aiinfra("plan", "--stack", "prod", "--json",
                                                                       "--assume", "overlap=0")
    assert base.code == 0 and slow.code == 0, slow.stderr
    b, s = json.loads(base.stdout)["training"][0], json.loads(slow.stdout)["training"][0]
    assert s["time_inputs"]["overlap"] == {"value": 0.0, "source": "set"}
    assert s["step_time_s"] > b["step_time_s"]
    bad = aiinfra("plan", "--stack", "prod", "--json", "--assume", "overlap=7")
    assert bad.code == 2 and "between 0 and 1" in bad.stderr


def test_ib_sharp_all_reduce_follows_the_fabric():
    # Narayanan Table 1, 1.7B: 32 A100 on 4 nodes, no sharding: the gradients are all-reduced over HDR
    row = next(r for r in ROWS if r.table == "narayanan2021_t1" and r.row == "1.7B")

    def dp(req):
        cs = step_time(req, row.layout).to_dict()["collectives"]
        return next(c for c in cs if c["name"] == "dp_gradient_all_reduce")

    ring, sharp = dp(row.request), dp(with_overrides(row.request, fabric_sharp=True))
    assert ring["algorithm"] == "ring" and ring["link"] == "hdr200"
    # 8 GPUs of the group per node, one 200 Gb/s rail each, 0.8 of the link: 8 x 25 x 0.8 = 160 GB/s
    assert ring["bus_bandwidth_b_s"] == pytest.approx(160e9)
    assert sharp["algorithm"] == "sharp" and sharp["time_s"] < ring["time_s"]
    off = dp(with_overrides(row.request, fabric_sharp=True, time_inputs=(("ib_sharp", 0.0),)))
    assert off["algorithm"] == "ring"
