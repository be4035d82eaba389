"""Reliability (MTBF, Young/Daly, goodput) and power."""

import math

import pytest

from aiinfra.catalog.gpus import gpu
from aiinfra.plan.power import NodePower, plan_power
from aiinfra.plan.reliability import cluster_mtbf_s, daly_interval_s, plan_reliability, young_interval_s


def test_cluster_mtbf_from_annual_failure_rate():
    # the brief: ~5 %/year per GPU; 4,096 GPUs -> 204.8 failures a year -> 8,760 / 204.8 = 42.8 h
    assert cluster_mtbf_s(4096, 0.05) / 3600 == pytest.approx(42.77, abs=0.01)


def test_young_and_daly():
    # Young 1974: sqrt(2 d M); Daly 2006 eq. (37): sqrt(2dM)(1 + sqrt(d/2M)/3 + d/(18M)) - d
    d, m = 60.0, 36_000.0
    assert young_interval_s(d, m) == pytest.approx(math.sqrt(2 * 60 * 36_000))
    expected = math.sqrt(2 * d * m) * (1 + math.sqrt(d / (2 * m)) / 3 + d / (18 * m)) - d
    assert daly_interval_s(d, m) == pytest.approx(expected)
    assert daly_interval_s(100.0, 40.0) == 40.0  # d >= 2M: checkpoint every MTBF


def test_checkpoint_size_and_write_time():
    # 14 bytes/parameter (bf16 weights + fp32 master, Adam m and v): 70.55e9 x 14 = 987.8 GB;
    # at the brief's 1 TB/s Lustre: about 1 s
    plan = plan_reliability(4096, 70_553_706_496, 1e12)
    assert plan.checkpoint_bytes == pytest.approx(70_553_706_496 * 14)
    assert plan.checkpoint_write_s == pytest.approx(0.988, abs=0.001)
    assert 0.95 < plan.goodput < 1.0
    slow = plan_reliability(4096, 70_553_706_496, 1e10)
    assert slow.goodput < plan.goodput
    assert slow.interval_s > plan.interval_s


def test_power_of_the_reference_cluster():
    # the brief: 512 nodes x 8 H100 at 700 W = 2.87 MW of GPUs; + 2 kW per node -> 3.89 MW IT,
    # x PUE 1.2 = 4.67 MW: more than the brief's "~3 MW"
    plan = plan_power([NodePower(512, gpu("h100"), 8)], node_overhead_w=2000, pue=1.2, budget_kw=3000)
    assert plan.gpu_power_w == 4096 * 700
    assert plan.it_power_w == 4096 * 700 + 512 * 2000
    assert plan.facility_power_w == pytest.approx(1.2 * 3_891_200)
    assert not plan.fits
    assert plan.headroom_w == pytest.approx(3_000_000 - 3_891_200)
