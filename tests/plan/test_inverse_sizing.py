"""Inverse questions: GPUs to train a budget in N days; the fastest micro-batch."""

import json

import pytest
from typer.testing import CliRunner

from aiinfra.catalog.gpus import gpu
from aiinfra.catalog.models import model
from aiinfra.cli.plan import size_app
from aiinfra.plan.common import DAY_S, PlanError
from aiinfra.plan.sizing import MICRO_BATCH_OPTIONS, best_micro_batch, gpus_for_days
from aiinfra.plan.training import TrainingRequest, plan_training

# Narayanan et al. (SC21), section 5.1 "End-to-end training time": GPT-3 175B on 300 billion tokens,
# 1,024 A100 GPUs at 140 teraFLOP/s per GPU, batch size 1,536: about 34 days (their 8 T P / (n X))
GPT3 = TrainingRequest(model("gpt3-175b"), gpu("a100-80gb"), 64, seq_len=2048, tokens=300e9, achieved_tflops=140,
                       recompute="full", global_batch=1536)


def test_gpt3_in_34_days_needs_about_1024_a100s():
    found = gpus_for_days(GPT3, 34)
    assert found.plan.request.gpus == pytest.approx(1024, rel=0.05)
    assert found.plan.training_time_s / DAY_S <= 34
    assert found.fewer_nodes_days is None or found.fewer_nodes_days > 34
    assert found.plan.request.gpus % 8 == 0


def test_more_days_fewer_gpus():
    assert gpus_for_days(GPT3, 68).plan.request.gpus < gpus_for_days(GPT3, 34).plan.request.gpus


def test_days_needs_a_budget():
    with pytest.raises(PlanError, match="token budget"):
        gpus_for_days(TrainingRequest(model("llama3-8b"), gpu("h100"), 8), 10)


def test_micro_batch_search_is_the_fastest_that_fits():
    req = TrainingRequest(model("llama3-8b"), gpu("h100"), 64, seq_len=8192, tokens=1e12)
    best = best_micro_batch(req)
    for b in MICRO_BATCH_OPTIONS:
        try:
            other = plan_training(TrainingRequest(model("llama3-8b"), gpu("h100"), 64, seq_len=8192, tokens=1e12,
                                                  micro_batch=b))
        except PlanError:
            continue
        assert best.step_time_s <= other.step_time_s + 1e-9


def test_cli_days_and_auto_micro_batch():
    args = ["train", "--model", "gpt3-175b", "--gpu", "a100-80gb", "--seq-len", "2048", "--tokens", "300B",
            "--achieved-tflops", "140", "--recompute", "full", "--global-batch", "1536", "--days", "34", "--json"]
    result = CliRunner().invoke(size_app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["gpus"] == data["gpus_for_days"]["gpus"] and data["training_time_days"] <= 34
    auto = CliRunner().invoke(size_app, ["train", "--model", "llama3-8b", "--gpus", "64", "--seq-len", "8192",
                                         "--micro-batch", "auto", "--json"])
    assert auto.exit_code == 0, auto.output
    assert json.loads(auto.stdout)["layout"]["micro_batch"] in MICRO_BATCH_OPTIONS
    no_budget = CliRunner().invoke(size_app, ["train", "--model", "llama3-8b", "--days", "3"])
    assert no_budget.exit_code == 2
