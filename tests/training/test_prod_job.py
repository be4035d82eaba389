"""Prod's Llama 3 70B job: the rendered sbatch script, field by field, against `aiinfra plan --json`."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
from ClusterShell.NodeSet import NodeSet
from training_helpers import flag, sbatch_options, shell_values

from aiinfra.catalog.models import resolve_model
from aiinfra.render.jobs import enroot_image
from conftest import load_stack, render

JOB = "llama3-70b-pretrain"


@pytest.fixture(scope="module")
def plan(request) -> dict:
    """The job's entry of `aiinfra plan --stack prod --json` (the CLI, as a user runs it)."""
    out = subprocess.run([".venv/bin/aiinfra", "plan", "--stack", "prod", "--json"], capture_output=True, text=True,
                         cwd=request.config.rootpath, check=True).stdout
    return next(t for t in json.loads(out)["training"] if t["name"] == JOB)


@pytest.fixture(scope="module")
def script() -> str:
    return render(load_stack("prod"), only=["jobs"])[f"jobs/{JOB}/sbatch.sh"]


@pytest.fixture(scope="module")
def values(script):
    return shell_values(script)


def test_layout_is_the_plans(plan, values):
    args, _ = values
    lay = plan["layout"]
    assert int(flag(args, "--tensor-model-parallel-size")) == lay["tp"]
    assert int(flag(args, "--pipeline-model-parallel-size")) == lay["pp"]
    assert int(flag(args, "--context-parallel-size")) == lay["cp"]
    assert (flag(args, "--num-layers-per-virtual-pipeline-stage") is None) == (lay["vpp"] == 1)
    assert (flag(args, "--sequence-parallel") == "") == lay["sequence_parallel"]
    assert flag(args, "--use-distributed-optimizer") == ""
    assert lay["recompute"] == "selective" and flag(args, "--recompute-activations") == ""
    assert flag(args, "--recompute-granularity") is None
    assert flag(args, "--bf16") == "" and flag(args, "--fp8-format") is None


def test_batch_arithmetic(plan, values, script):
    args, _ = values
    lay = plan["layout"]
    micro, global_batch = int(flag(args, "--micro-batch-size")), int(flag(args, "--global-batch-size"))
    assert (micro, global_batch) == (lay["micro_batch"], lay["global_batch"])
    assert micro * lay["num_microbatches"] * lay["dp"] == global_batch
    opts = sbatch_options(script)
    gpus = int(opts["nodes"]) * int(opts["gres"].removeprefix("gpu:"))
    assert lay["tp"] * lay["pp"] * lay["dp"] * lay["cp"] == gpus == plan["gpus"] == 3584  # 448 nodes x 8
    assert int(flag(args, "--seq-length")) == lay["seq_len"]
    assert int(flag(args, "--train-iters")) == math.ceil(plan["tokens"] / lay["global_batch_tokens"])


def test_checkpoint_interval_is_young_daly_over_the_step_time(plan, values):
    args, _ = values
    rel = plan["reliability"]
    steps = int(flag(args, "--save-interval"))
    # 111 steps: the step time of the calibrated step-time model (129 with the old constant efficiency)
    assert steps == math.floor(rel["checkpoint_interval_s"] / plan["step_time_s"]) == 59
    assert flag(args, "--save") == flag(args, "--load") == "/lustre/checkpoints/llama3-70b-pretrain"
    assert flag(args, "--exit-signal-handler") == ""


def test_model_dimensions_come_from_the_catalog(plan, values):
    args, _ = values
    m = resolve_model(plan["model"])
    assert int(flag(args, "--num-layers")) == m.layers == 80
    assert int(flag(args, "--hidden-size")) == m.hidden
    assert int(flag(args, "--ffn-hidden-size")) == m.ffn_hidden
    assert int(flag(args, "--num-attention-heads")) == m.heads
    assert flag(args, "--group-query-attention") == "" and int(flag(args, "--num-query-groups")) == m.kv_heads
    assert flag(args, "--tokenizer-type") == "HuggingFaceTokenizer"


def test_extra_args_follow_the_rendered_ones(values):
    args, _ = values
    extra = list(load_stack("prod").cluster.blueprint.training[0].extra_args)
    assert args[-len(extra):] == extra and extra[:2] == ["--lr", "1.5e-4"]


def test_nccl_hcas_are_the_rails_of_the_inventory(values, aiinfra):
    _, env = values
    inventory = json.loads(aiinfra("inventory", "--stack", "prod", "--list").stdout)
    rails = inventory["gpu_train"]["vars"]["aiinfra_rail_hcas"]  # gpu001's node group
    assert rails == list(NodeSet("mlx5_[0-7]"))
    assert env["NCCL_IB_HCA"] == "=" + ",".join(f"{h}:1" for h in rails)
    assert env["UCX_NET_DEVICES"] == ",".join(f"{h}:1" for h in rails)
    assert env["NCCL_COLLNET_ENABLE"] == "1"  # prod's fabric has SHARP
    assert env["NCCL_NET_GDR_LEVEL"] == "PXB"
    assert env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"


def test_slurm_options(plan, script):
    opts = sbatch_options(script)
    assert opts["nodes"] == "448" and opts["gres"] == "gpu:8" and opts["ntasks-per-node"] == "8"
    assert opts["switches"] == "14"  # 448 nodes / 32 per SU
    assert opts["partition"] == "train" and opts["time"] == "14-00:00:00"
    assert "requeue" in opts and opts["open-mode"] == "append"
    signal, _, lead = opts["signal"].partition("@")
    assert signal == "B:USR1"
    rel = plan["reliability"]
    assert int(lead) >= 60 + 2 * (plan["step_time_s"] + rel["checkpoint_write_s"])
    cluster = load_stack("prod").cluster
    image = cluster.blueprint.versions.images["megatron"]
    assert f"CONTAINER_IMAGE='{enroot_image(image)}'" in script
    assert enroot_image(image) == "nvcr.io#nvidia/pytorch:25.04-py3"


def test_script_is_valid_bash(script, tmp_path):
    path = tmp_path / "sbatch.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
