"""Serving questions: time to first token, per-user speed and request latency; a KV cache given as
bytes or blocks; quantized weights as stored beside the nominal figure."""

import json

import pytest
from typer.testing import CliRunner

from aiinfra.catalog.gpus import gpu
from aiinfra.catalog.models import model
from aiinfra.cli.plan import size_app
from aiinfra.plan.common import GIB, PlanError
from aiinfra.plan.serving import BLOCK_SIZE, ServingRequest, plan_serving


@pytest.mark.parametrize(("gpu_name", "published_ms"), [("h100", 153.8), ("a100-80gb", 234.0)])
def test_request_latency_against_nemo_llama2_7b(gpu_name, published_ms):
    # NVIDIA NeMo Framework user guide, Performance, "Llama-2 Results", Inference (chatbot case:
    # 128 input tokens, 20 output tokens, batch 1, TP 1): average latency 153.8 ms on H100 80GB HBM3,
    # 234.0 ms on A100 80GB SXM4. The roofline (weights read once per step, no kernel-launch or
    # framework time) is a lower bound: 99 ms and 164 ms, 35 % and 30 % under the published figures
    plan = plan_serving(ServingRequest(model("llama2-7b"), gpu(gpu_name), tp=1, max_model_len=4096, prompt_len=128,
                                       output_len=20))
    lat = plan.latency
    assert lat.request_s * 1e3 < published_ms
    assert lat.request_s * 1e3 > 0.6 * published_ms
    assert lat.request_s == pytest.approx(lat.ttft_s + 19 * lat.decode_step_s)
    assert lat.per_user_tokens_per_s == pytest.approx(1 / lat.decode_step_s)


def test_ttft_grows_with_the_prompt_and_shrinks_with_tp():
    short = plan_serving(ServingRequest(model("llama3-70b"), gpu("h100"), tp=4, prompt_len=512)).latency
    long = plan_serving(ServingRequest(model("llama3-70b"), gpu("h100"), tp=4, prompt_len=8192)).latency
    wide = plan_serving(ServingRequest(model("llama3-70b"), gpu("h100"), tp=8, prompt_len=8192)).latency
    assert long.ttft_s > 10 * short.ttft_s and long.prefill_bound == "compute"
    assert wide.ttft_s < long.ttft_s


def test_kv_cache_given_as_blocks_or_bytes():
    # vLLM's --num-gpu-blocks-override and --kv-cache-memory-bytes (engine_flags.json): the blocks are
    # the given count; bytes become floor(bytes / (16 x KV bytes per token per GPU)). Llama 3 70B at
    # TP 4: 2 x 80 layers x 2 KV heads x 128 x 2 bytes = 81,920 bytes per token per GPU
    blocks = plan_serving(ServingRequest(model("llama3-70b"), gpu("h100"), tp=4, num_gpu_blocks_override=5000))
    assert blocks.num_blocks == 5000 and blocks.kv_cache_tokens == 80_000
    assert blocks.kv_bytes_per_token_per_gpu == 81_920
    assert blocks.to_dict()["kv_cache_source"] == "num_gpu_blocks_override"
    sized = plan_serving(ServingRequest(model("llama3-70b"), gpu("h100"), tp=4, kv_cache_memory_bytes=10 * GIB))
    assert sized.num_blocks == (10 * GIB) // (BLOCK_SIZE * 81_920)  # 8,192
    with pytest.raises(PlanError, match="more than an h100-80gb"):
        plan_serving(ServingRequest(model("llama3-70b"), gpu("h100"), tp=4, num_gpu_blocks_override=100_000))
    with pytest.raises(PlanError, match="less than one"):
        plan_serving(ServingRequest(model("llama3-70b"), gpu("h100"), tp=4, num_gpu_blocks_override=10))
    with pytest.raises(PlanError, match="not both"):
        plan_serving(ServingRequest(model("llama3-70b"), gpu("h100"), tp=4, num_gpu_blocks_override=10,
                                    kv_cache_memory_bytes=GIB))


def test_awq_weights_as_stored_and_nominal():
    # Llama 3 70B (70,553,706,496 parameters): linear layers 68,451,041,280 at 4 + 20/128 bits (group
    # 128: fp16 scale + 4-bit zero), the rest (embedding and lm_head 2 x 128,256 x 8,192, norms) in
    # 16 bits: 39,767,785,472 bytes as stored; the "4 bits x 70.6B" people quote: 35,276,853,248
    plan = plan_serving(ServingRequest(model("llama3-70b"), gpu("h100"), weight_format="awq-int4", tp=1))
    assert plan.weights_bytes == pytest.approx(39_767_785_472)
    assert plan.nominal_weights_bytes == pytest.approx(35_276_853_248)
    data = plan.to_dict()
    assert data["weights_nominal_bits"] == 4 and data["weights_nominal_bytes"] == 35_276_853_248


def test_cli_serve_latency_and_kv_flags():
    result = CliRunner().invoke(size_app, ["serve", "--model", "llama3-70b", "--tp", "4", "--prompt-len", "1000",
                                           "--output-len", "100", "--kv-cache-memory-bytes", "10GiB", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["num_blocks"] == 8192 and data["latency"]["prompt_len"] == 1000
    assert data["latency"]["request_latency_s"] > data["latency"]["ttft_s"]
    bad = CliRunner().invoke(size_app, ["serve", "--model", "llama3-70b", "--kv-cache-memory-bytes", "lots"])
    assert bad.exit_code == 2
