"""bitsandbytes NF4 serving: the format's storage against the QLoRA paper, the planner's weights and
decode steps, ``size serve --quant nf4``, the vLLM flags at the pinned versions, and TensorRT-LLM's
refusal."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from serving_helpers import args_of, find, load_variant, problems_of, serving_objects, stack_data
from typer.testing import CliRunner

from aiinfra.catalog.formats import FORMATS, numeric_format
from aiinfra.catalog.gpus import gpu
from aiinfra.catalog.models import LlmArchitecture, model
from aiinfra.cli.plan import size_app
from aiinfra.plan.common import PlanError
from aiinfra.plan.serving import HBM_EFFICIENCY, ServingRequest, plan_serving

NF4 = FORMATS["nf4"]


# ---------------------------------------------------------------- the format


def test_double_quantization_overhead_is_the_qlora_papers():
    # Dettmers et al. 2023, QLoRA (arXiv:2305.14314), section 3, Double Quantization: "for a
    # blocksize of 64, this quantization reduces the memory footprint per parameter from 32/64 = 0.5
    # bits, to 8/64 + 32/(64 * 256) = 0.127 bits, a reduction of 0.373 bits per parameter"
    assert NF4.bits_per_weight - NF4.weight_bits == pytest.approx(0.127, abs=5e-4)
    single = replace(NF4, group_overhead_bits=32, group2_size=0, group2_overhead_bits=0)  # fp32 absmax only
    assert single.bits_per_weight - single.weight_bits == pytest.approx(0.5)
    assert single.bits_per_weight - NF4.bits_per_weight == pytest.approx(0.373, abs=5e-4)
    # a 4,096 x 14,336 matrix: 917,504 blocks of 64, 3,584 second-level constants
    assert NF4.linear_bytes(4096, 14336) == 4096 * 14336 / 2 + 917_504 + 3_584 * 4


def test_one_nf4_definition_serves_qlora_and_serving():
    from aiinfra.plan.training import NF4_DOUBLE_QUANT_BITS

    assert NF4.bits_per_weight == NF4_DOUBLE_QUANT_BITS
    assert numeric_format("bitsandbytes") is NF4 and NF4.quantized and NF4.compute == "bf16"


# ---------------------------------------------------------------- the planner


def test_llama3_8b_nf4_weights_as_stored_and_nominal():
    # Llama 3 8B (8,030,261,248 parameters): the 32 layers' linear weights, 6,979,321,856, at 4.127
    # bits = 3,600,416,768 bytes; embedding and lm_head (2 x 128,256 x 4,096) and the norms (266,240)
    # in bf16 = 2,101,878,784 bytes: 5,702,295,552 as stored; "4 bits x 8.03B" = 4,015,130,624
    plan = plan_serving(ServingRequest(model("llama3-8b"), gpu("h100"), weight_format="nf4", tp=1))
    assert plan.weights_bytes == pytest.approx(5_702_295_552)
    assert plan.nominal_weights_bytes == pytest.approx(4_015_130_624)
    data = plan.to_dict()
    assert data["quantization"] == "nf4" and data["weights_nominal_bits"] == 4
    assert data["weights_dequantized_per_matmul"] is True
    assert data["weights_bits_per_quantized_weight"] == pytest.approx(4.127, abs=5e-4)


def _steps(fmt: str) -> dict[int, float]:
    plan = plan_serving(ServingRequest(model("llama3-8b"), gpu("h100"), weight_format=fmt, tp=1, avg_context_len=1024))
    return {p.batch: p.step_s for p in plan.roofline}


def test_nf4_decode_reads_4_bits_alone_and_a_16_bit_copy_in_a_batch():
    # bitsandbytes' matmul_4bit (bitsandbytes/autograd/_functions.py): one row -> gemv_4bit on the
    # packed weight; more rows -> dequantize_4bit to a 16-bit copy, then F.linear on it, every call
    nf4, awq, bf16 = _steps("nf4"), _steps("awq-int4"), _steps("bf16")
    assert nf4[1] == pytest.approx(awq[1], rel=0.02)  # both read ~4.1-bit weights
    assert nf4[1] < bf16[1] / 2.5
    # batch 2: the 16-bit copy is written and read back, 2 x 2 bytes per linear weight
    extra = 2 * 2 * 6_979_321_856 / (gpu("h100").hbm_bandwidth_gb_s * 1e9 * HBM_EFFICIENCY)
    assert nf4[2] - nf4[1] == pytest.approx(extra, rel=0.05)
    assert nf4[2] > bf16[2] > awq[2]


def test_nf4_moe_dequantizes_every_expert_even_alone():
    # vLLM 0.12.0's BitsAndBytesMoEMethod.apply dequantizes w13 and w2 of all experts on every call
    # (vllm/model_executor/layers/quantization/bitsandbytes.py), then fused_experts reads the routed
    # ones: Mixtral 8x7B at batch 1 (2 of 8 experts, 4,096 x 14,336 x 3 each, 32 layers) writes all 8
    # in bf16 and reads 2 back, and reads the 6 others' NF4 bytes
    m = model("mixtral-8x7b")
    steps = {}
    for fmt in ("nf4", "awq-int4"):
        plan = plan_serving(ServingRequest(m, gpu("h100"), weight_format=fmt, tp=2, avg_context_len=1024))
        steps[fmt] = plan.roofline[0]
    assert steps["nf4"].batch == 1
    expert = 4096 * 14336 * 3
    extra = 32 * (6 * expert * NF4.bits_per_weight / 8 + (8 + 2) * expert * 2)
    hbm = 2 * gpu("h100").hbm_bandwidth_gb_s * 1e9 * HBM_EFFICIENCY  # TP 2
    assert steps["nf4"].step_s - steps["awq-int4"].step_s == pytest.approx(extra / hbm, rel=0.05)


def test_nf4_splits_at_any_tp_where_awq_needs_whole_groups():
    # 64 heads of 80 (5,120 wide, FFN 13,824): TP 8 splits o_proj's input into 640 = 5 x 128 but the
    # down projection's into 1,728, not a multiple of AWQ's group of 128; bitsandbytes blocks the
    # flattened shard, so any split quantizes
    odd = LlmArchitecture("odd", "llama", layers=4, hidden=5120, ffn_hidden=13824, heads=64, kv_heads=8, vocab=32000)
    assert plan_serving(ServingRequest(odd, gpu("h100"), weight_format="nf4", tp=8)).tp == 8
    with pytest.raises(PlanError, match="group size 128"):
        plan_serving(ServingRequest(odd, gpu("h100"), weight_format="awq-int4", tp=8))


def test_cli_size_serve_answers_nf4():
    run = CliRunner().invoke(size_app, ["serve", "--model", "llama3-8b", "--quant", "nf4", "--json"])
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert data["quantization"] == "nf4" and data["weights_bytes"] == 5_702_295_552
    alias = CliRunner().invoke(size_app, ["serve", "--model", "llama3-8b", "--quant", "bitsandbytes", "--json"])
    assert json.loads(alias.stdout)["quantization"] == "nf4"
    table = CliRunner().invoke(size_app, ["serve", "--model", "llama3-8b", "--quant", "nf4"])
    assert table.exit_code == 0 and "16-bit copy" in table.stdout


# ---------------------------------------------------------------- rendered and refused


def _chat_in_nf4(data: dict, image: str = "vllm") -> int:
    i = next(i for i, d in enumerate(data["serving"]) if d["name"] == "llama3-70b-chat")
    dep = data["serving"][i]
    dep.update(quantization="nf4", image=image, weights_path="/lustre/models/meta-llama-3.1-70b-instruct")
    dep.pop("speculative", None)
    return i


def _server_args(data: dict) -> dict[str, str | None]:
    objs = serving_objects(load_variant(data))["llama3-70b-chat"]
    pod = find(objs, "Deployment")["spec"]["template"]["spec"]
    return args_of(next(c for c in pod["containers"] if c["name"] == "server"))


@pytest.mark.parametrize(("image", "load_format"), [
    # vLLM 0.8.5 and 0.12.0: EngineArgs.create_load_config sets load_format = "bitsandbytes" itself
    ("vllm/vllm-openai:v0.8.5", False),
    ("vllm/vllm-openai:v0.12.0", False),
    # vLLM 0.8.1: the same function refuses --quantization bitsandbytes without the load format
    ("vllm/vllm-openai:v0.8.1", True),
])
def test_vllm_quantizes_a_16bit_checkpoint_to_nf4_while_loading(image, load_format):
    data = stack_data("prod")
    data["versions"]["images"]["vllm-nf4"] = image
    _chat_in_nf4(data, "vllm-nf4")
    args = _server_args(data)
    assert args["--quantization"] == "bitsandbytes"
    assert ("--load-format" in args) is load_format
    if load_format:
        assert args["--load-format"] == "bitsandbytes"


def test_a_prequantized_bitsandbytes_checkpoint_runs_at_tp_1_only():
    data = stack_data("prod")
    i = _chat_in_nf4(data)
    data["serving"][i].update(checkpoint_quantization="bitsandbytes", tp=1)
    assert "--quantization" not in _server_args(data)  # vLLM 0.8.5 takes quant_method from config.json
    data["serving"][i]["tp"] = 2
    found = {p.key_path: p for p in problems_of(data) if p.level.value == "error"}
    problem = found[f"aiinfra:cluster.serving[{i}].tp"]
    assert problem.id == "serving-checkpoint-quantization" and "tp: 1" in problem.hint


def test_tensorrt_llm_refuses_nf4():
    data = stack_data("prod")
    i = next(i for i, d in enumerate(data["serving"]) if d["name"] == "llama3-8b-trt")
    data["serving"][i]["quantization"] = "nf4"
    found = {p.key_path: p for p in problems_of(data) if p.level.value == "error"}
    problem = found[f"aiinfra:cluster.serving[{i}].quantization"]
    assert problem.id == "serving-engine-flag"
    assert "bitsandbytes NF4" in problem.message and "engine: vllm" in problem.hint
