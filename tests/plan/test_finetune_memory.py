"""Fine-tuning memory: full, LoRA, QLoRA, and 8-bit Adam, against published figures."""

import json

import pytest
from typer.testing import CliRunner

from aiinfra.catalog.gpus import gpu
from aiinfra.catalog.models import custom_architecture, model
from aiinfra.cli.plan import size_app
from aiinfra.plan.common import PlanError
from aiinfra.plan.training import (
    NF4_DOUBLE_QUANT_BITS,
    Layout,
    TrainingRequest,
    lora_params_per_layer,
    plan_training,
    training_memory,
)

# LLaMA 65B (Touvron et al. 2023, Table 2: 80 layers, dimension 8,192, 64 heads; the released
# config.json: FFN 22,016, vocabulary 32,000)
LLAMA_65B = custom_architecture("llama-65b", layers=80, hidden=8192, ffn_hidden=22016, heads=64, kv_heads=64,
                                vocab=32000)


def _one_gpu(arch, **kw):
    req = TrainingRequest(arch, gpu("h100"), 1, tp=1, pp=1, dp=1, cp=1, seq_len=512, global_batch=1,
                          framework="deepspeed", zero_stage=0, **kw)
    return training_memory(req, Layout(1, 1, 1, 1, 1, 1, 1, "full", 0))


def test_qlora_paper_65b_from_780_gb_to_under_48_gb():
    # Dettmers et al. 2023 (QLoRA), abstract: finetuning a 65B model needs "more than 780GB of GPU
    # memory" in 16-bit, "less than 48GB" with QLoRA (NF4 + double quantization, LoRA r = 64 on every
    # linear layer, bf16 adapters: no fp32 master copy)
    full = _one_gpu(LLAMA_65B, master_weights=False)
    qlora = _one_gpu(LLAMA_65B, finetune="qlora", lora_rank=64, master_weights=False)
    assert full.model_states_bytes > 780e9
    assert qlora.model_states_bytes < 48e9
    # the frozen linear weights at 4.127 bits (section 3: 4 + 8/64 + 32/(64 x 256))
    assert round(NF4_DOUBLE_QUANT_BITS, 3) == 4.127
    assert qlora.trainable_params_per_gpu == 80 * lora_params_per_layer(LLAMA_65B, 64)


def test_lora_adapter_count_by_hand():
    # Llama 2 7B, r = 8 on q, k, v, o (4,096 x 4,096 each) and gate, up (4,096 -> 11,008), down:
    # 4 x 8 x 8,192 + 3 x 8 x 15,104 = 262,144 + 362,496 = 624,640 per layer
    assert lora_params_per_layer(model("llama2-7b"), 8) == 624_640


def test_lora_trains_only_the_adapters():
    m = model("llama2-7b")
    full, lora = _one_gpu(m), _one_gpu(m, finetune="lora", lora_rank=16)
    assert lora.weights_bytes > 2 * m.params  # frozen 16-bit weights plus the adapters
    assert lora.gradients_bytes < full.gradients_bytes / 100
    assert lora.optimizer_bytes < full.optimizer_bytes / 100


def test_8bit_adam_saves_three_quarters_of_the_moments():
    # bitsandbytes docs (v0.43 "8-bit optimizers"): "75% less memory" for the optimizer states; the
    # fp32 master weights (4 bytes) stay, the moments go from 8 bytes to 2 (+ one fp32 absmax per
    # 2,048 values, Dettmers et al. 2022)
    m = model("llama2-7b")
    adam, adam8 = _one_gpu(m), _one_gpu(m, optimizer="adam-8bit")
    moments32 = adam.optimizer_bytes - 4 * m.params
    moments8 = adam8.optimizer_bytes - 4 * m.params
    assert 1 - moments8 / moments32 == pytest.approx(0.75, abs=0.002)


def test_bad_fine_tuning_inputs_are_plan_errors():
    base = dict(tp=1, pp=1, dp=8, cp=1, seq_len=4096, global_batch=64)
    with pytest.raises(PlanError, match="full, lora, qlora"):
        plan_training(TrainingRequest(model("llama2-7b"), gpu("h100"), 8, finetune="dora", **base))
    with pytest.raises(PlanError, match="adam, adam-8bit"):
        plan_training(TrainingRequest(model("llama2-7b"), gpu("h100"), 8, optimizer="sgd", **base))
    with pytest.raises(PlanError, match="rank"):
        plan_training(TrainingRequest(model("llama2-7b"), gpu("h100"), 8, finetune="lora", lora_rank=0, **base))


def test_cli_size_train_qlora():
    args = ["train", "--layers", "80", "--hidden", "8192", "--ffn", "22016", "--heads", "64", "--kv-heads", "64",
            "--vocab", "32000", "--gpus", "1", "--seq-len", "512", "--global-batch", "1", "--framework", "deepspeed",
            "--zero-stage", "0", "--recompute", "full", "--finetune", "qlora", "--lora-rank", "64",
            "--no-master-weights", "--json"]
    result = CliRunner().invoke(size_app, args)
    assert result.exit_code == 0, result.output
    mem = json.loads(result.stdout)["memory"]
    assert mem["model_states_bytes"] < 48e9  # QLoRA's abstract, as above
    assert mem["trainable_params_per_gpu"] == 80 * lora_params_per_layer(LLAMA_65B, 64)
