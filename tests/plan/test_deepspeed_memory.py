"""DeepSpeed ZeRO memory as DeepSpeed implements it, beside the ZeRO paper's ideal, and offload.

Expected numbers are worked out by hand from DeepSpeed's own estimators:
- deepspeed/runtime/zero/stage_1_and_2.py ``estimate_zero2_model_states_mem_needs`` (commit 02aa38c3):
  no offload, GPU = 2 P + int(18 P / N); offload, GPU = 2 P and CPU = P x max(4 N, 16) x 1.5.
- deepspeed/runtime/zero/stage3.py ``estimate_zero3_model_states_mem_needs`` (commit 007cca6a), as
  ``..._all_live`` calls it: L = the largest module's own parameters; no offload, GPU = 4 L +
  int(18 P / N), CPU (zero_init) = L x 4 x GPUs per node x 1.5; optimizer offloaded, GPU = 4 L +
  int(2 P / N), CPU = 16 P / nodes x 1.5; parameters too, GPU = 4 L, CPU = 18 P / nodes x 1.5.
For Llama 2 7B (Touvron et al. 2023; the HF checkpoint's 6,738,415,616 parameters) the largest module
is the token embedding, 32,000 x 4,096 = 131,072,000 parameters (the untied lm_head is the same size).
One node of 8 GPUs: N = 8, nodes = 1.
"""

import json

import pytest
from typer.testing import CliRunner

from aiinfra.catalog.gpus import gpu
from aiinfra.catalog.models import model
from aiinfra.cli.plan import size_app
from aiinfra.plan.common import PlanError
from aiinfra.plan.training import (
    Layout,
    TrainingRequest,
    deepspeed_model_states,
    plan_training,
    training_memory,
    training_request_from_job,
)
from aiinfra.spec.models import TrainingJob

P = 6_738_415_616
L = 131_072_000


def _memory(stage: int, offload: str = "none", param: str = "none"):
    req = TrainingRequest(
        model("llama2-7b"), gpu("h100"), 8, tp=1, pp=1, dp=8, cp=1, seq_len=4096, global_batch=64,
        framework="deepspeed", zero_stage=stage, offload_optimizer=offload, offload_param=param,
    )
    return training_memory(req, Layout(1, 1, 8, 1, 1, 1, 64, "selective", stage))


def test_llama2_7b_has_the_estimators_parameter_count():
    assert model("llama2-7b").params == P


def test_zero2_as_implemented():
    # 2 x 6,738,415,616 + int(18 x 6,738,415,616 / 8) = 13,476,831,232 + 15,161,435,136
    mem = _memory(2)
    assert mem.model_states_bytes == pytest.approx(28_638_266_368, abs=1)
    # the paper's ideal beside it: 2 P + 14 P / 8 (16-bit gradients sharded, no fp32 gradient partition)
    assert mem.paper_model_states_bytes == pytest.approx(2 * P + 14 * P / 8)
    assert mem.model_states_bytes > mem.paper_model_states_bytes


def test_zero2_with_the_optimizer_on_cpu():
    # GPU 2 P = 13,476,831,232; CPU P x max(4 x 8, 16) x 1.5 = 48 P = 323,443,949,568 per node
    mem = _memory(2, "cpu")
    assert mem.model_states_bytes == pytest.approx(13_476_831_232, abs=1)
    assert mem.host_bytes_per_node == pytest.approx(323_443_949_568, abs=1)
    assert mem.offload_device == "cpu"


def test_zero3_gathers_the_largest_layer():
    # 4 x 131,072,000 + int(18 x 6,738,415,616 / 8) = 524,288,000 + 15,161,435,136
    mem = _memory(3)
    assert mem.gathered_bytes == 4 * L
    assert mem.model_states_bytes == pytest.approx(15_685_723_136, abs=1)
    # host (zero_init): 131,072,000 x 4 x 8 x 1.5 = 6,291,456,000
    assert mem.host_bytes_per_node == pytest.approx(6_291_456_000)
    # the paper's ZeRO-3: 16 P / 8, no gathered layer
    assert mem.paper_model_states_bytes == pytest.approx(16 * P / 8)


def test_zero3_offload_optimizer_then_parameters():
    # optimizer to CPU: 524,288,000 + int(2 x 6,738,415,616 / 8) = 524,288,000 + 1,684,603,904;
    # CPU 16 P x 1.5 = 161,721,974,784
    opt = _memory(3, "cpu")
    assert opt.model_states_bytes == pytest.approx(2_208_891_904, abs=1)
    assert opt.host_bytes_per_node == pytest.approx(161_721_974_784)
    # parameters too: GPU 4 L = 524,288,000; CPU 18 P x 1.5 = 181,937,221,632
    both = _memory(3, "cpu", "cpu")
    assert both.model_states_bytes == pytest.approx(524_288_000)
    assert both.host_bytes_per_node == pytest.approx(181_937_221_632)
    assert both.offload_bytes_per_node == pytest.approx(18 * P)


def test_nvme_offload_frees_the_gpu_as_cpu_offload_does():
    cpu, nvme = _memory(3, "cpu", "cpu"), _memory(3, "nvme", "nvme")
    assert nvme.model_states_bytes == cpu.model_states_bytes
    assert nvme.offload_device == "nvme" and nvme.offload_bytes_per_node == cpu.offload_bytes_per_node
    assert nvme.host_bytes_per_node < cpu.host_bytes_per_node


def test_megatron_keeps_its_own_accounting():
    # Megatron-LM docs (dist_optimizer.md): 6 + 12/d bytes per parameter with the distributed optimizer
    req = TrainingRequest(model("llama2-7b"), gpu("h100"), 8, tp=1, pp=1, dp=8, cp=1, seq_len=4096, global_batch=64)
    mem = training_memory(req, Layout(1, 1, 8, 1, 1, 1, 64, "selective", 1))
    assert mem.model_states_bytes == pytest.approx(P * (6 + 12 / 8))
    assert mem.gathered_bytes == 0


def test_offload_needs_deepspeed_and_parameter_offload_needs_the_optimizers():
    base = dict(tp=1, pp=1, dp=8, cp=1, seq_len=4096, global_batch=64)
    with pytest.raises(PlanError, match="DeepSpeed"):
        plan_training(TrainingRequest(model("llama2-7b"), gpu("h100"), 8, offload_optimizer="cpu", **base))
    with pytest.raises(PlanError, match="offload the optimizer too"):
        plan_training(TrainingRequest(model("llama2-7b"), gpu("h100"), 8, framework="deepspeed", zero_stage=3,
                                      offload_param="cpu", **base))
    with pytest.raises(PlanError, match="none, cpu, nvme"):
        plan_training(TrainingRequest(model("llama2-7b"), gpu("h100"), 8, framework="deepspeed", zero_stage=3,
                                      offload_optimizer="disk", **base))
    with pytest.raises(PlanError, match="stage 1"):
        deepspeed_model_states(P, 8, 0, L, 8, "cpu")


def test_offload_lets_a_model_fit_that_did_not():
    # Llama 2 13B on one 8-GPU node at ZeRO-2: 2 P + 18 P / 8 = 4.25 x 13e9 = 55 GB of model states
    # plus activations does not fit 80 GB at seq 4096 without recomputation; with the optimizer on the
    # CPU only the 16-bit weights (2 P, 26 GB) stay
    base = dict(tp=1, pp=1, dp=8, cp=1, seq_len=4096, global_batch=64, framework="deepspeed", zero_stage=2,
                recompute="none")
    with pytest.raises(PlanError):
        plan_training(TrainingRequest(model("llama2-13b"), gpu("h100"), 8, **base))
    plan = plan_training(TrainingRequest(model("llama2-13b"), gpu("h100"), 8, offload_optimizer="cpu", **base))
    assert plan.memory.fits
    assert plan.memory.model_states_bytes == pytest.approx(2 * model("llama2-13b").params)


def test_cli_size_train_offload():
    args = ["train", "--model", "llama2-7b", "--tp", "1", "--pp", "1", "--dp", "8", "--cp", "1", "--seq-len", "4096",
            "--global-batch", "64", "--framework", "deepspeed", "--zero-stage", "3", "--json"]
    plain = CliRunner().invoke(size_app, args)
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.stdout)["memory"]["model_states_bytes"] == 15_685_723_136  # as above
    both = CliRunner().invoke(size_app, [*args, "--offload-optimizer", "cpu", "--offload-param", "cpu"])
    assert both.exit_code == 0, both.output
    mem = json.loads(both.stdout)["memory"]
    assert mem["model_states_bytes"] == 524_288_000 and mem["offload_device"] == "cpu"
    bad = CliRunner().invoke(size_app, [*args, "--offload-param", "cpu"])
    assert bad.exit_code == 1 and "offload the optimizer too" in bad.output


def test_blueprint_offload_is_counted_as_rendered():
    # the renderer writes offload_optimizer from stage 1 and offload_param at stage 3 (plan/jobs.py)
    job = TrainingJob.model_validate({"name": "t", "model": "llama2-7b", "node_group": "g", "nodes": 1,
                                      "tokens": 1e9, "framework": "deepspeed", "zero_stage": 3, "offload": "cpu",
                                      "tp": 1, "pp": 1, "cp": 1, "seq_len": 4096, "global_batch": 64})
    plan = plan_training(training_request_from_job(job, "h100-80gb", 8))
    assert plan.memory.model_states_bytes == pytest.approx(4 * L)  # 524,288,000, as above
    megatron = TrainingJob.model_validate({"name": "t", "model": "llama2-7b", "node_group": "g", "nodes": 1,
                                           "tokens": 1e9, "offload": "cpu"})
    assert training_request_from_job(megatron, "h100-80gb", 8).offload_optimizer == "none"  # the check's problem
