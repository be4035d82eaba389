"""Catalog facts: exact parameter counts from published hyper-parameters, names, formats."""

import pytest

from aiinfra.catalog.formats import kv_bytes_per_value, numeric_format
from aiinfra.catalog.models import MODELS, custom_architecture, model, resolve_model


@pytest.mark.parametrize(
    ("name", "params"),
    [
        # Hugging Face model cards / safetensors index totals of the released checkpoints
        ("llama3-8b", 8_030_261_248),
        ("llama3-70b", 70_553_706_496),
        ("llama2-7b", 6_738_415_616),
        ("llama2-13b", 13_015_864_320),
        ("llama2-70b", 68_976_648_192),
        ("mixtral-8x7b", 46_702_792_704),
    ],
)
def test_exact_parameter_counts(name, params):
    assert model(name).params == params


def test_llama3_405b_is_about_405b():
    # Llama 3 paper Table 3: 405B parameters (126 layers, d 16,384, FFN 53,248, 128 heads, 8 KV heads)
    assert 405e9 <= model("llama3-405b").params <= 406e9


def test_gpt3_175b_is_about_175b():
    # Brown et al. 2020 Table 2.1: 175.0B parameters (12 L d^2 = 173.9B plus embeddings and biases)
    assert 174e9 <= model("gpt3-175b").params <= 176e9


def test_mixtral_active_parameters_about_12_9b():
    # Mistral AI, "Mixtral of experts": 47B total, 13B active (12.9B) per token
    m = model("mixtral-8x7b")
    assert 12.8e9 <= m.active_params <= 13.0e9
    assert m.params > 3 * m.active_params


def test_aliases_and_suggestions():
    assert model("llama3.1-70b") is model("llama3-70b")
    assert model("Llama-3-70B") is model("llama3-70b")
    assert model("llama3.1-405b").layers == 126
    with pytest.raises(KeyError, match="did you mean 'llama3-70b'"):
        model("llama3-7b0")


def test_every_model_has_consistent_heads():
    for m in MODELS.values():
        assert m.hidden == m.heads * m.head_dim
        assert m.heads % m.kv_heads == 0


def test_custom_architecture_from_blueprint_shape():
    class Spec:  # the attributes of aiinfra.spec.models.ModelArchitecture
        family, layers, hidden, ffn_hidden, heads, kv_heads, vocab = "llama3", 32, 4096, 14336, 32, 8, 128256
        experts, experts_per_token, tied_embeddings = 1, 1, False
        rope_theta, qkv_bias, norm_epsilon, norm, mlp, max_context = 500000, False, 1e-5, "rmsnorm", "swiglu", None

    arch = resolve_model("my-8b", {"my-8b": Spec()})
    assert arch.params == model("llama3-8b").params  # same shape as Llama 3 8B
    with pytest.raises(KeyError, match="my-8b"):
        resolve_model("nope-8b", {"my-8b": Spec()})


def test_custom_architecture_rejects_inconsistent_heads():
    with pytest.raises(ValueError, match="multiple of heads"):
        custom_architecture("x", layers=2, hidden=100, ffn_hidden=400, heads=3, kv_heads=3, vocab=10)


def test_group_quantization_overhead():
    # AWQ/GPTQ group 128: fp16 scale (16 bits) + 4-bit zero per group -> 4 + 20/128 bits per weight
    fmt = numeric_format("awq-int4")
    assert fmt.bits_per_weight == pytest.approx(4.15625)
    assert fmt.linear_bytes(8192, 1024) == 8192 * 1024 / 2 + (8192 // 128) * 1024 * 20 / 8
    assert numeric_format("gptq").name == "gptq-int4"
    with pytest.raises(KeyError, match="did you mean"):
        numeric_format("awq-in4")


def test_kv_dtype_bytes():
    assert kv_bytes_per_value("auto", "bf16") == 2
    assert kv_bytes_per_value("fp8") == 1
    with pytest.raises(KeyError):
        kv_bytes_per_value("fp4")
