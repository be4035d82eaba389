"""All-cause job interruptions beside the hardware AFR, planned stops, requeue and restart; node
nameplate power beside typical power."""

import json

import pytest
from typer.testing import CliRunner

from aiinfra.catalog.gpus import gpu
from aiinfra.cli.plan import size_app
from aiinfra.plan.common import PlanError
from aiinfra.plan.power import NodePower, plan_power
from aiinfra.plan.reliability import (
    DEFAULT_INTERRUPTIONS_PER_GPU_YEAR,
    DEFAULT_PLANNED_PER_GPU_YEAR,
    plan_reliability,
)

PARAMS = 405e9  # checkpoint size only: the rates do not depend on it


def test_llama3_snapshot_rates_reproduce_the_paper():
    # Meta, "The Llama 3 Herd of Models" (2024), section 3.3.4 / Table 5: 419 unexpected and 47 planned
    # interruptions in a 54-day snapshot on 16,384 H100 GPUs: 7.76 a day, one every 3.09 h
    # (DatacenterDynamics' report of the paper: "one failure every three hours")
    rel = plan_reliability(16_384, PARAMS, 2e12, interruptions_per_gpu_year=DEFAULT_INTERRUPTIONS_PER_GPU_YEAR,
                           planned_per_gpu_year=DEFAULT_PLANNED_PER_GPU_YEAR)
    assert rel.failures_per_day == pytest.approx(419 / 54)
    assert rel.mtbf_s / 3600 == pytest.approx(54 * 24 / 419)
    assert rel.planned_per_day == pytest.approx(47 / 54)
    # per GPU-year: 419 / (16,384 x 54 / 365) = 0.173, about 3.5 x the 5 % hardware AFR
    assert round(DEFAULT_INTERRUPTIONS_PER_GPU_YEAR, 4) == 0.1729
    assert rel.hardware_mtbf_s / rel.mtbf_s == pytest.approx(0.1729 / 0.05, rel=1e-3)


def test_without_an_interruption_rate_the_hardware_rate_stands():
    rel = plan_reliability(4096, 70e9, 1e12)
    assert rel.interruptions_per_gpu_year is None and rel.mtbf_s == rel.hardware_mtbf_s
    assert rel.to_dict()["interruption_source"] == "hardware AFR"


def test_planned_stops_requeue_and_restart_cost_goodput():
    base = dict(interruptions_per_gpu_year=DEFAULT_INTERRUPTIONS_PER_GPU_YEAR)
    plain = plan_reliability(16_384, 405e9, 2e12, **base)
    planned = plan_reliability(16_384, 405e9, 2e12, planned_per_gpu_year=DEFAULT_PLANNED_PER_GPU_YEAR, **base)
    requeued = plan_reliability(16_384, 405e9, 2e12, requeue_s=600, **base)
    # first order: each planned stop costs the restart and a checkpoint write, (R + d) x stops per second
    stops_per_s = 16_384 * DEFAULT_PLANNED_PER_GPU_YEAR / (8760 * 3600)
    assert plain.goodput - planned.goodput == pytest.approx((600 + plain.checkpoint_write_s) * stops_per_s)
    # a 10-minute requeue doubles the 10-minute restart's cost per failure: 600 s / MTBF more waste
    assert plain.goodput - requeued.goodput == pytest.approx(600 / plain.mtbf_s, rel=1e-6)
    assert requeued.interruption_cost_s == 1200
    with pytest.raises(PlanError):
        plan_reliability(16_384, 405e9, 2e12, interruptions_per_gpu_year=0)


def test_dgx_h100_nameplate_beside_typical():
    # NVIDIA DGX H100 datasheet / user guide: system power ~10.2 kW max. Typical here: 8 x 700 W
    # TDP + 2 kW overhead = 7.6 kW per node
    plan = plan_power([NodePower(512, gpu("h100"), 8)], node_overhead_w=2000, pue=1.2, budget_kw=4500)
    assert plan.it_power_w == 512 * 7600
    assert plan.nameplate_it_power_w == 512 * 10_200
    assert plan.fits and plan.nameplate_fits is False
    # a node size the table has no figure for: no nameplate, said so
    odd = plan_power([NodePower(4, gpu("h100"), 4)])
    assert odd.nameplate_it_power_w is None and odd.to_dict()["nameplate_fits"] is None
    # DGX A100 datasheet: 6.5 kW max; a node type's own figure overrides the catalog's
    assert plan_power([NodePower(1, gpu("a100-80gb"), 8)]).nameplate_it_power_w == 6500
    assert plan_power([NodePower(1, gpu("h100"), 8, nameplate_w=11_000)]).nameplate_it_power_w == 11_000


def test_cli_size_train_reports_interruptions_and_takes_them():
    args = ["train", "--model", "llama3-8b", "--gpus", "16384", "--tp", "2", "--pp", "1", "--seq-len", "8192",
            "--global-batch", "8192", "--json"]
    result = CliRunner().invoke(size_app, args)
    assert result.exit_code == 0, result.output
    rel = json.loads(result.stdout)["reliability"]
    assert rel["failures_per_day"] == pytest.approx(419 / 54)  # the default: Llama 3's snapshot
    assert rel["hardware_failures_per_day"] == pytest.approx(16_384 * 0.05 / 365)
    given = CliRunner().invoke(size_app, [*args, "--interruptions-per-gpu-year", "0.1", "--requeue-minutes", "5"])
    rel = json.loads(given.stdout)["reliability"]
    assert rel["failures_per_day"] == pytest.approx(16_384 * 0.1 / 365)
    assert rel["requeue_s"] == 300 and rel["interruption_source"] == "given"
