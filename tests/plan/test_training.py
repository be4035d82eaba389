"""Training planner against published numbers (each test names its source)."""

import time

import pytest

from aiinfra.catalog.gpus import gpu
from aiinfra.catalog.models import model
from aiinfra.plan import PlanError
from aiinfra.plan.training import (
    Layout,
    TrainingRequest,
    activation_bytes_per_layer,
    candidates,
    megatron_training_time_s,
    model_flops_per_token,
    model_state_bytes,
    pipeline_bubble_fraction,
    plan_training,
    stage_layer_counts,
    training_memory,
)

GPT3 = model("gpt3-175b")  # GPT-style: dropout, 4h GELU MLP, multi-head attention (Korthikanti's model)


@pytest.mark.parametrize(("stage", "expected_gb"), [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_model_states(stage, expected_gb):
    # Rajbhandari et al., "ZeRO", SC20, Figure 1 / Table 1: 7.5B parameters, Nd = 64, K = 12,
    # GB = 1e9 bytes: 120 GB (baseline), 31.4 GB (Pos), 16.6 GB (Pos+g), 1.9 GB (Pos+g+p)
    total = sum(model_state_bytes(7.5e9, 64, stage, weight_bytes=2, grad_bytes=2, optimizer_bytes=12))
    assert total / 1e9 == pytest.approx(expected_gb, abs=0.05)


@pytest.mark.parametrize("d", [1, 8, 64])
def test_megatron_distributed_optimizer_bytes_per_parameter(d):
    # Megatron-LM docs, "Distributed Optimizer": bf16 parameters with fp32 gradients take
    # 18 bytes per parameter without it and 6 + 12/d with it (d = data-parallel size)
    m = model("llama3-8b")
    req = TrainingRequest(m, gpu("h100"), d, gpus_per_node=8, tp=1, pp=1, dp=d, global_batch=d * 4)
    lay = Layout(1, 1, d, 1, 1, 1, d * 4, "selective", zero_stage=1)
    mem = training_memory(req, lay)
    assert mem.model_states_bytes == pytest.approx(m.params * (6 + 12 / d), rel=1e-9)
    plain = training_memory(req, Layout(1, 1, d, 1, 1, 1, d * 4, "selective", zero_stage=0))
    assert plain.model_states_bytes == pytest.approx(m.params * 18, rel=1e-9)


def _sbh(s, b, h):
    return s * b * h


def test_korthikanti_no_parallelism():
    # Korthikanti et al. 2022, eq. (1): activations per layer sbh(34 + 5as/h) bytes
    s, b, h, a = 2048, 1, GPT3.hidden, GPT3.heads
    got = activation_bytes_per_layer(GPT3, s, b, flash_attention=False)
    assert got == pytest.approx(_sbh(s, b, h) * (34 + 5 * a * s / h))


@pytest.mark.parametrize("t", [2, 4, 8])
def test_korthikanti_tensor_and_sequence_parallel(t):
    # Korthikanti et al. 2022, eq. (4): sbh(34/t + 5as/(ht)) with tensor and sequence parallelism
    s, b, h, a = 2048, 2, GPT3.hidden, GPT3.heads
    got = activation_bytes_per_layer(GPT3, s, b, tp=t, sequence_parallel=True, flash_attention=False)
    assert got == pytest.approx(_sbh(s, b, h) * (34 / t + 5 * a * s / (h * t)))


@pytest.mark.parametrize("t", [2, 8])
def test_korthikanti_tensor_parallel_only(t):
    # Korthikanti et al. 2022, eq. (2): sbh(10 + 24/t + 5as/(ht)) with tensor parallelism alone
    s, b, h, a = 2048, 1, GPT3.hidden, GPT3.heads
    got = activation_bytes_per_layer(GPT3, s, b, tp=t, sequence_parallel=False, flash_attention=False)
    assert got == pytest.approx(_sbh(s, b, h) * (10 + 24 / t + 5 * a * s / (h * t)))


def test_korthikanti_selective_recompute():
    # Korthikanti et al. 2022, eq. (5): 34 sbh / t with sequence parallelism and selective recomputation
    s, b, h, t = 2048, 1, GPT3.hidden, 8
    got = activation_bytes_per_layer(GPT3, s, b, tp=t, sequence_parallel=True, recompute="selective",
                                     flash_attention=False)
    assert got == pytest.approx(34 * _sbh(s, b, h) / t)


def test_korthikanti_full_recompute_keeps_layer_input():
    # Korthikanti et al. 2022, section 4.3: full recomputation stores only the 2sbh layer input
    assert activation_bytes_per_layer(GPT3, 2048, 1, recompute="full") == 2 * 2048 * GPT3.hidden


def test_megatron_eq4_gpt3_days():
    # Narayanan et al. SC21, section 5.1 / eq. (4): GPT-3 175B, 300B tokens, 1,024 A100 at
    # 140 TFLOP/s per GPU -> about 34 days
    days = megatron_training_time_s(300e9, 175e9, 1024, 140) / 86400
    assert days == pytest.approx(34, abs=0.5)


def test_planner_reproduces_megatron_gpt3_days():
    # Same case through the planner (full recomputation, achieved 140 TFLOP/s): the exact FLOP count
    # (attention and lm_head included) stays within a few percent of eq. (4)'s 34 days
    req = TrainingRequest(
        GPT3, gpu("a100-80gb"), 1024, tp=8, pp=16, dp=8, seq_len=2048, global_batch=1536,
        recompute="full", achieved_tflops=140, tokens=300e9,
    )
    plan = plan_training(req)
    assert plan.training_time_s / 86400 == pytest.approx(34, rel=0.05)
    assert plan.memory.fits


def test_pipeline_bubble():
    # Narayanan et al. SC21, section 2.2: bubble fraction (p - 1) / m, interleaved (p - 1) / (v m)
    assert pipeline_bubble_fraction(8, 32) == pytest.approx(7 / 32)
    assert pipeline_bubble_fraction(16, 32, 4) == pytest.approx(15 / 128)


def test_flops_per_token_is_6n_plus_attention():
    # PaLM (Chowdhery et al. 2022), appendix B: 6N + 12 L H Q T per token
    # N: the weights that multiply (attention, MLP, lm_head), not the embedding lookup or norms
    n_matmul = 80 * (2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672) + 128256 * 8192
    assert model_flops_per_token(model("llama3-70b"), 8192) == 6 * n_matmul + 12 * 80 * 64 * 128 * 8192


@pytest.mark.parametrize(("gpus", "dp", "paper_mfu"), [(8192, 64, 0.43), (16384, 128, 0.41)])
def test_llama3_405b_table4_mfu(gpus, dp, paper_mfu):
    # Llama 3 paper (Meta 2024) Table 4: 405B on 8,192 / 16,384 H100, TP 8, CP 1, PP 16, DP 64 / 128,
    # sequence 8,192, 16M tokens per batch: 43 % / 41 % BF16 MFU (430 / 400 TFLOP/s per GPU).
    # That layout fits only with sharded gradients (ZeRO stage 2: the DeepSpeed memory model here;
    # Megatron-LM's distributed optimizer shards optimizer states only) and an interleaved schedule
    # on the uneven stages (vpp given: the search offers only VPP that splits the layers evenly).
    req = TrainingRequest(
        model("llama3-405b"), gpu("h100"), gpus, tp=8, pp=16, dp=dp, cp=1, vpp=8, seq_len=8192,
        global_batch_tokens=16 * 2**20, recompute=None, zero_stage=None, framework="deepspeed",
    )
    plan = plan_training(req)
    assert plan.memory.fits
    # the search's layout (VPP 8, no recomputation, which fits here) runs 20-23 % above the paper's MFU;
    # with the paper's own settings the rows are within 12 % (tests/plan/test_calibration.py)
    assert plan.mfu == pytest.approx(paper_mfu, rel=0.25)


def test_stage_layers_uneven_like_llama3_405b():
    # Llama 3 paper section 3.3.2: 126 layers on 16 stages, one layer fewer on the first and last
    assert stage_layer_counts(126, 16) == [7] + [8] * 14 + [7]
    assert sum(stage_layer_counts(10, 4)) == 10


def test_layout_search_only_valid_layouts():
    m = model("llama3-70b")
    req = TrainingRequest(m, gpu("h100"), 512, recompute=None, zero_stage=None, vpp=None)
    cands, _ = candidates(req)
    assert cands
    for c in cands:
        lay = c.layout
        assert lay.tp * lay.pp * lay.dp * lay.cp == 512
        assert m.heads % lay.tp == 0 and m.kv_heads % lay.tp == 0
        assert lay.tp <= 8  # inside the NVLink domain
        assert m.layers >= 2 * lay.pp or m.layers % lay.pp == 0
        assert lay.global_batch % (lay.dp * lay.micro_batch) == 0
    plan = plan_training(req)
    assert plan.memory.fits
    assert all(plan.estimate.total_s <= c.time.total_s + 1e-9 for c in cands if c.memory.fits)


def test_tp_that_does_not_divide_heads_is_refused():
    req = TrainingRequest(model("llama3-70b"), gpu("h100"), 24, tp=3, pp=1, dp=8)
    with pytest.raises(PlanError, match="TP 3 does not divide 64 attention heads"):
        plan_training(req)


def test_tp_across_nodes_needs_permission():
    req = TrainingRequest(GPT3, gpu("h100"), 1024, tp=16, pp=8, dp=8, seq_len=2048)
    with pytest.raises(PlanError, match="NVLink domain"):
        plan_training(req)


def test_layout_product_must_match_gpus():
    req = TrainingRequest(model("llama3-8b"), gpu("h100"), 64, tp=8, pp=2, dp=2)
    with pytest.raises(PlanError, match="= 32 is not the job's 64 GPUs"):
        plan_training(req)


def test_not_fitting_layout_names_the_numbers():
    # 70B with full Adam on 8 GPUs: 70.6e9 x (6 + 12) / 8 bytes of model states per GPU alone is > 80 GiB
    req = TrainingRequest(model("llama3-70b"), gpu("h100"), 8, tp=8, pp=1, dp=1, recompute="selective")
    with pytest.raises(PlanError) as exc:
        plan_training(req)
    msg = str(exc.value)
    assert "GiB per GPU" in msg and "h100-80gb has 80.0 GiB" in msg and "try" in msg


def test_fp8_needs_fp8_tensor_cores():
    req = TrainingRequest(model("llama3-8b"), gpu("a100-80gb"), 8, precision="fp8")
    with pytest.raises(PlanError, match="no FP8"):
        plan_training(req)


def test_llama3_70b_512x8_h100_is_not_7_days_for_15t_tokens():
    # the brief: "Llama 3 70B trained in 7 days on 512 x 8 H100"; Meta's model card: 15T tokens.
    # 6 x 70e9 x 15e12 = 6.3e24 FLOPs; 4,096 x 989 TFLOP/s x 50 % = 2.0e18 FLOP/s -> > 36 days
    from aiinfra.plan.claims import check_training_days_claim

    check = check_training_days_claim()
    assert not check.holds
    assert 30 < check.numbers["days_needed"] < 70
    assert 1.5e12 < check.numbers["tokens_in_claimed_days"] < 3.5e12


def test_full_cluster_plan_is_fast():
    # the issue: a full plan (all jobs of a 512-node cluster) in well under 0.5 s
    from aiinfra.plan.serving import ServingRequest, plan_serving

    start = time.perf_counter()
    for name, gpus in (("llama3-70b", 4096), ("llama3-405b", 4096), ("llama3-8b", 512), ("mixtral-8x7b", 1024)):
        plan_training(TrainingRequest(model(name), gpu("h100"), gpus, tokens=1e12, recompute=None, zero_stage=None))
    for name in ("llama3-8b", "llama3-70b", "llama3-405b", "mixtral-8x7b", "llama2-70b"):
        plan_serving(ServingRequest(model(name), gpu("h100"), pp=None, target_tokens_per_s=1e5))
    assert time.perf_counter() - start < 0.5
