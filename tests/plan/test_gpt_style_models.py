"""GPT-style architectures (LayerNorm, GELU, biases, tied embeddings, learned positions) and the RoPE
base in the model description: counted exactly, asked from the CLI, rendered into Megatron's flags."""

import json

import pytest
from typer.testing import CliRunner

from aiinfra.catalog.gpus import gpu
from aiinfra.catalog.models import resolve_model
from aiinfra.cli.plan import size_app
from aiinfra.plan.jobs import Checkpointing, megatron_args
from aiinfra.plan.training import TrainingRequest, plan_training
from aiinfra.spec.models import ModelArchitecture, TrainingJob

# GPT-2 XL (Radford et al. 2019; the released checkpoint's config: 48 layers, n_embd 1,600, 25 heads,
# vocabulary 50,257, n_positions 1,024, tied embeddings): 1,557,611,200 parameters as the checkpoint
# holds them (keras-hub's gpt2_extra_large_en preset metadata "params": 1557611200)
GPT2_XL = {"family": "gpt2", "layers": 48, "hidden": 1600, "ffn_hidden": 6400, "heads": 25, "kv_heads": 25,
           "vocab": 50257, "tied_embeddings": True, "rope_theta": 10000, "norm_epsilon": 1e-5, "norm": "layernorm",
           "mlp": "gelu", "linear_bias": True, "learned_positions": 1024}
CLI_GPT2_XL = ["--layers", "48", "--hidden", "1600", "--ffn", "6400", "--heads", "25", "--kv-heads", "25",
               "--vocab", "50257", "--norm", "layernorm", "--mlp", "gelu", "--linear-bias", "--tied-embeddings",
               "--learned-positions", "1024"]


def test_gpt2_xl_from_the_blueprint_counts_as_published():
    arch = resolve_model("gpt2-xl", {"gpt2-xl": ModelArchitecture.model_validate(GPT2_XL)})
    assert arch.params == 1_557_611_200


def test_gpt2_xl_from_the_cli():
    result = CliRunner().invoke(size_app, ["train", *CLI_GPT2_XL, "--seq-len", "1024", "--gpus", "8", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["params"] == 1_557_611_200
    serve = CliRunner().invoke(size_app, ["serve", *CLI_GPT2_XL, "--max-model-len", "1024", "--json"])
    assert serve.exit_code == 0, serve.output
    # longer than its learned positions: a plan error, not a traceback
    long = CliRunner().invoke(size_app, ["train", *CLI_GPT2_XL, "--seq-len", "2048", "--gpus", "8"])
    assert long.exit_code == 1 and "learned positions for 1024 tokens" in long.output
    # style flags describe a custom model only
    mixed = CliRunner().invoke(size_app, ["train", "--model", "llama3-8b", "--rope-theta", "10", "--gpus", "8"])
    assert mixed.exit_code == 2 and "--rope-theta" in mixed.output


def _megatron_flags(arch_spec: dict) -> list[str]:
    arch = resolve_model("custom", {"custom": ModelArchitecture.model_validate(arch_spec)})
    plan = plan_training(TrainingRequest(arch, gpu("h100"), 8, seq_len=1024, global_batch=64))
    job = TrainingJob.model_validate({"name": "t", "model": "custom", "node_group": "g", "nodes": 1, "tokens": 1e9})
    ckpt = Checkpointing("/ckpt", 100, None, None, 2, "blueprint", "latest", "iter_")
    return megatron_args(plan, job, ckpt, 10, "/data", "tok")


def test_gpt_style_and_rope_base_reach_megatrons_flags():
    # Megatron-LM core_r0.12.0 arguments.py: --position-embedding-type learned_absolute, LayerNorm,
    # biases on unless --disable-bias-linear, --rotary-base for rope
    gpt = _megatron_flags(GPT2_XL)
    assert gpt[gpt.index("--position-embedding-type") + 1] == "learned_absolute"
    assert gpt[gpt.index("--normalization") + 1] == "LayerNorm"
    assert "--disable-bias-linear" not in gpt and "--swiglu" not in gpt
    assert "--untie-embeddings-and-output-weights" not in gpt
    rope = _megatron_flags({**GPT2_XL, "norm": "rmsnorm", "mlp": "swiglu", "linear_bias": False,
                            "learned_positions": 0, "tied_embeddings": False, "rope_theta": 500000})
    assert rope[rope.index("--rotary-base") + 1] == "500000"
    assert "--disable-bias-linear" in rope and "--swiglu" in rope


@pytest.mark.parametrize("bad", [{"learned_positions": -1}])
def test_bad_positions_are_refused(bad):
    with pytest.raises(ValueError):
        ModelArchitecture.model_validate({**GPT2_XL, **bad})
