"""Serving planner: KV cache, vLLM blocks, TP choice, speculation (each test names its source)."""

import math

import pytest

from aiinfra.catalog.gpus import gpu
from aiinfra.catalog.models import model
from aiinfra.plan import PlanError
from aiinfra.plan.serving import (
    BLOCK_SIZE,
    ServingRequest,
    kv_cache_bytes_per_token,
    plan_serving,
    speculative_speedup,
    weight_bytes,
)

H100_BUDGET = 0.9 * 80 * 2**30


@pytest.mark.parametrize(("name", "expected"), [("llama3-70b", 327_680), ("llama3-8b", 131_072)])
def test_kv_cache_bytes_per_token(name, expected):
    # 2 x layers x kv_heads x head_dim x 2 bytes: Llama 3 70B 2 x 80 x 8 x 128 x 2 = 327,680;
    # Llama 3 8B 2 x 32 x 8 x 128 x 2 = 131,072 (the published figures)
    assert kv_cache_bytes_per_token(model(name)) == expected
    assert kv_cache_bytes_per_token(model(name), "fp8") == expected / 2


def test_vllm_block_arithmetic():
    # vLLM: num_gpu_blocks = KV bytes // (block_size x KV bytes per token); a sequence of L tokens
    # takes ceil(L / 16) blocks; "maximum concurrency" = blocks x 16 / max_model_len
    plan = plan_serving(ServingRequest(model("llama3-8b"), gpu("h100"), max_model_len=8192, tp=1))
    per_token = 131_072
    assert plan.num_blocks == math.floor(plan.kv_cache_per_gpu_bytes / (BLOCK_SIZE * per_token))
    assert plan.blocks_per_sequence == 512
    assert plan.max_concurrent_sequences == plan.num_blocks // 512
    assert plan.max_concurrency == pytest.approx(plan.num_blocks * 16 / 8192)
    # weights 16.06 GB + KV must stay within the 0.9 x 80 GiB budget
    used = plan.weights_per_gpu_bytes + plan.kv_cache_per_gpu_bytes + plan.activation_bytes + plan.non_torch_bytes
    assert used == pytest.approx(H100_BUDGET)


def test_bf16_70b_does_not_fit_one_h100():
    # 70,553,706,496 parameters x 2 bytes = 141.1 GB > 80 GiB
    req = ServingRequest(model("llama3-70b"), gpu("h100"), tp=1, pp=1)
    with pytest.raises(PlanError) as exc:
        plan_serving(req)
    msg = str(exc.value)
    assert "141.1 GB" in msg and "TP=1" in msg and "try --tp 2" in msg


def test_auto_tp_picks_smallest_that_fits():
    # 141.1 GB / 2 = 70.6 GB per GPU fits in 0.9 x 80 GiB = 77.3 GB with room for one 8K sequence
    # (8,192 x 327,680 / 2 = 1.3 GB); TP 1 cannot hold the weights
    plan = plan_serving(ServingRequest(model("llama3-70b"), gpu("h100"), max_model_len=8192))
    assert (plan.tp, plan.pp) == (2, 1)
    assert plan.max_concurrent_sequences >= 1


def test_awq_int4_70b_weights_include_16bit_embeddings_and_group_scales():
    # AutoAWQ layout: 4-bit weights + fp16 scale + 4-bit zero per 128 inputs; embeddings and lm_head
    # stay 16-bit. Linear weights 80 x (2 x 8192^2 + 2 x 8192 x 1024 + 3 x 8192 x 28672);
    # 16-bit: 2 x 128,256 x 8,192 + norms. Published AWQ checkpoints of Llama 3 70B are ~39.8 GB.
    linear = 80 * (2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672)
    sixteen = 2 * 128256 * 8192 + (2 * 80 + 1) * 8192
    expected = linear * (4 + 20 / 128) / 8 + sixteen * 2
    assert weight_bytes(model("llama3-70b"), "awq-int4").total == pytest.approx(expected, rel=1e-6)


def test_brief_int4_claim():
    # the brief: "Llama 3 70B INT4 = 35 GB (one H100)": it runs on one H100, but the weights are
    # ~39.8 GB, and 0.9 x 80 GiB leaves roughly 30 GiB of KV cache (~100K tokens at 327,680 B/token)
    from aiinfra.plan.claims import check_quantized_fits_claim

    check = check_quantized_fits_claim()
    assert check.status == "partly" and not check.holds  # it runs on one H100; the size is wrong
    assert check.numbers["fits_one_gpu"] and not check.numbers["size_claim_holds"]
    assert 39e9 < check.numbers["weights_bytes"] < 41e9
    assert 80_000 < check.numbers["kv_cache_tokens"] < 120_000


def test_fp8_kv_doubles_the_cache():
    a = plan_serving(ServingRequest(model("llama3-8b"), gpu("h100"), tp=1))
    b = plan_serving(ServingRequest(model("llama3-8b"), gpu("h100"), tp=1, kv_dtype="fp8"))
    assert b.num_blocks == pytest.approx(2 * a.num_blocks, abs=1)


def test_leviathan_speedup():
    # Leviathan et al. 2023, eq. (1) and theorem 3.8: E[tokens] = (1 - a^(g+1)) / (1 - a);
    # speedup = (1 - a^(g+1)) / ((1 - a)(g c + 1)). a = 0.8, g = 5, c = 0.05:
    # (1 - 0.8^6) / 0.2 = 3.689; / 1.25 = 2.951
    tokens, speedup = speculative_speedup(0.8, 5, 0.05)
    assert tokens == pytest.approx(3.68928)
    assert speedup == pytest.approx(3.68928 / 1.25)


def test_draft_must_share_tokenizer():
    req = ServingRequest(model("llama3-70b"), gpu("h100"), draft=model("llama2-7b"))
    with pytest.raises(PlanError, match="tokenizer"):
        plan_serving(req)


def test_speculation_with_llama3_8b_draft():
    plan = plan_serving(ServingRequest(model("llama3-70b"), gpu("h100"), tp=4, draft=model("llama3-8b")))
    spec = plan.speculation
    # memory bound decode: cost ratio ~ weight ratio 16 GB / 141 GB
    assert 0.08 < spec.cost_ratio < 0.2
    assert spec.speedup > 1.5
    assert plan.draft_weights_per_gpu_bytes == pytest.approx(model("llama3-8b").params * 2 / 4, rel=0.01)


def test_decode_roofline_is_memory_bound_at_batch_1():
    # batch 1 reads all weights once per token: 16.06 GB / (3.35 TB/s x 0.8) = 6.0 ms -> ~167 tokens/s
    plan = plan_serving(ServingRequest(model("llama3-8b"), gpu("h100"), tp=1))
    first = plan.roofline[0]
    assert first.batch == 1 and first.bound == "memory"
    assert first.tokens_per_s == pytest.approx(1 / (16.06e9 / (3.35e12 * 0.8)), rel=0.05)
    rates = [p.tokens_per_s for p in plan.roofline]
    assert rates == sorted(rates)


def test_replicas_for_target():
    plan = plan_serving(ServingRequest(model("llama3-8b"), gpu("h100"), tp=1, target_tokens_per_s=50_000))
    assert plan.replicas == math.ceil(50_000 / plan.replica_tokens_per_s)
    assert plan.gpus == plan.replicas


def test_awq_group_size_limits_tp():
    # Llama 2 13B: down_proj has 13,824 inputs; TP 8 leaves 1,728, not a multiple of 128
    req = ServingRequest(model("llama2-13b"), gpu("h100"), weight_format="awq-int4", tp=8)
    with pytest.raises(PlanError, match="group size 128"):
        plan_serving(req)


def test_pp_across_nodes_when_tp8_is_not_enough():
    # 405B bf16 = 811.7 GB > 8 x 0.9 x 80 GiB: needs two nodes
    plan = plan_serving(ServingRequest(model("llama3-405b"), gpu("h100"), pp=None))
    assert (plan.tp, plan.pp) == (8, 2)
    assert plan.nodes == 2


def test_gpt3_learned_positions_limit_context():
    with pytest.raises(PlanError, match="2048"):
        plan_serving(ServingRequest(model("gpt3-175b"), gpu("h100"), max_model_len=4096, pp=None))
