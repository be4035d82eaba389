"""LLM architectures: exact published hyper-parameters, and exact parameter counts from them.

Sources (model cards / config.json of the released checkpoints, and the papers):
- Llama 3 / 3.1 8B, 70B, 405B (Meta, "The Llama 3 Herd of Models", 2024, Table 3; HF config.json):
  vocab 128,256, RMSNorm, SwiGLU, RoPE, grouped-query attention with 8 KV heads, untied
  embeddings. 8B: 32 layers, d 4,096, FFN 14,336, 32 heads. 70B: 80, 8,192, 28,672, 64 heads.
  405B: 126, 16,384, 53,248, 128 heads. Llama 3.1 keeps the same weights shape (128K context).
- Llama 2 7B/13B/70B (Touvron et al. 2023; HF config.json): vocab 32,000; 7B 32/4,096/11,008/32
  heads (MHA); 13B 40/5,120/13,824/40 (MHA); 70B 80/8,192/28,672/64 heads, 8 KV heads.
- GPT-3 175B (Brown et al. 2020, Table 2.1): 96 layers, d 12,288, 96 heads of 128, FFN 4d, context
  2,048 with learned positions, GPT-2 tokenizer (50,257), LayerNorm and biases, GELU MLP;
  input and output embeddings tied as in GPT-2.
- Mixtral 8x7B (Jiang et al. 2024; HF config.json): 32 layers, d 4,096, FFN 14,336 per expert,
  32 heads, 8 KV heads, vocab 32,000, 8 experts, 2 per token, untied.
- RoPE base and norm epsilon (HF config.json ``rope_theta``, ``rms_norm_eps``): Llama 3 500,000 and
  1e-5 (Megatron-LM core_r0.12.0 docs/llama_mistral.md launches Llama 3 with ``--rotary-base
  500000``); Llama 2 10,000 and 1e-5; Mixtral 1,000,000 and 1e-5 (same doc, Mistral:
  ``--rotary-base 1000000``); GPT-3 learned positions, LayerNorm epsilon 1e-5 (GPT-2's). No catalog
  model has a QKV bias. Megatron-LM's defaults are ``--rotary-base 10000`` and ``--norm-epsilon 1e-5``
  (megatron/training/arguments.py), so a Llama 3 job that did not say its base would train a
  different model.

Counts (checked in tests): Llama 3 8B 8,030,261,248; Llama 3 70B 70,553,706,496;
Mixtral 8x7B 46,702,792,704 total, 12,879,925,248 active (~12.9B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiinfra.catalog.names import lookup, resolve_with


@dataclass(frozen=True)
class LlmArchitecture:
    """A decoder-only transformer, enough to count parameters, FLOPs, activations and KV cache."""

    name: str
    family: str  # tokenizer family: a speculative draft must share it
    layers: int
    hidden: int
    ffn_hidden: int  # per expert for MoE
    heads: int
    kv_heads: int
    vocab: int
    experts: int = 1
    experts_per_token: int = 1
    tied_embeddings: bool = False
    gated_mlp: bool = True  # SwiGLU: gate, up and down projections; False: two matrices (GELU)
    norm: str = "rmsnorm"  # rmsnorm (one weight vector) or layernorm (weight and bias)
    linear_bias: bool = False  # biases on every linear layer (GPT-3)
    learned_positions: int = 0  # rows of a learned position embedding (0: rotary)
    dropout: bool = False  # trained with dropout (adds masks to the activation memory)
    max_context: int = 0  # longest context the model supports (0: unknown)
    display: str = ""  # human name for messages and tables
    rope_theta: int = 10_000  # RoPE base (HF rope_theta; Megatron --rotary-base); unused with learned positions
    qkv_bias: bool = False  # biases on the Q, K and V projections only (Qwen2); linear_bias implies them
    norm_epsilon: float = 1e-5  # epsilon of every RMSNorm / LayerNorm (HF rms_norm_eps)

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"{self.name}: hidden {self.hidden} is not a multiple of heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.name}: heads {self.heads} are not a multiple of kv_heads {self.kv_heads}")
        if not 1 <= self.experts_per_token <= self.experts:
            raise ValueError(f"{self.name}: experts_per_token must be between 1 and experts ({self.experts})")
        if self.norm not in ("rmsnorm", "layernorm"):
            raise ValueError(f"{self.name}: norm must be rmsnorm or layernorm")
        if self.rope_theta < 1 or not 0 < self.norm_epsilon < 1:
            raise ValueError(f"{self.name}: rope_theta must be at least 1 and norm_epsilon between 0 and 1")

    # ------------------------------------------------------------------ shapes

    @property
    def title(self) -> str:
        return self.display or self.name

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    def linear_shapes(self) -> list[tuple[str, int, int, int]]:
        """The linear layers of one transformer layer: ``(name, in_features, out_features, copies)``.

        ``copies`` is the number of experts for MLP matrices (1 for attention).
        """
        h, f, e = self.hidden, self.ffn_hidden, self.experts
        shapes = [
            ("q", h, self.q_dim, 1),
            ("k", h, self.kv_dim, 1),
            ("v", h, self.kv_dim, 1),
            ("o", self.q_dim, h, 1),
        ]
        if self.gated_mlp:
            shapes += [("gate", h, f, e), ("up", h, f, e), ("down", f, h, e)]
        else:
            shapes += [("fc1", h, f, e), ("fc2", f, h, e)]
        return shapes

    # ------------------------------------------------------------------ parameters per part

    @property
    def norm_params(self) -> int:
        """One normalisation layer (RMSNorm: weight; LayerNorm: weight and bias)."""
        return self.hidden * (2 if self.norm == "layernorm" else 1)

    @property
    def attention_params(self) -> int:
        p = 2 * self.hidden * self.q_dim + 2 * self.hidden * self.kv_dim
        if self.linear_bias or self.qkv_bias:
            p += self.q_dim + 2 * self.kv_dim
        if self.linear_bias:
            p += self.hidden
        return p

    @property
    def expert_params(self) -> int:
        """One MLP (one expert)."""
        h, f = self.hidden, self.ffn_hidden
        p = (3 if self.gated_mlp else 2) * h * f
        if self.linear_bias:
            p += (2 * f if self.gated_mlp else f) + h
        return p

    @property
    def router_params(self) -> int:
        return self.hidden * self.experts if self.is_moe else 0

    @property
    def layer_params(self) -> int:
        return self.attention_params + self.experts * self.expert_params + self.router_params + 2 * self.norm_params

    @property
    def layer_active_params(self) -> int:
        return (
            self.attention_params
            + self.experts_per_token * self.expert_params
            + self.router_params
            + 2 * self.norm_params
        )

    @property
    def embedding_params(self) -> int:
        """Input token embedding plus learned positions."""
        return self.vocab * self.hidden + self.learned_positions * self.hidden

    @property
    def lm_head_params(self) -> int:
        """Output projection as stored (0 when tied to the input embedding)."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def params(self) -> int:
        """Exact parameter count."""
        return self.layers * self.layer_params + self.embedding_params + self.lm_head_params + self.norm_params

    @property
    def active_params(self) -> int:
        """Parameters used per token (MoE: only ``experts_per_token`` experts)."""
        return (
            self.layers * self.layer_active_params + self.embedding_params + self.lm_head_params + self.norm_params
        )

    @property
    def matmul_params_per_token(self) -> int:
        """Weights that take part in a matrix multiply per token: the transformer layers' linear
        layers (active experts and router) and the output projection, which multiplies even when tied.
        The input embedding is a lookup and does no arithmetic."""
        per_layer = self.attention_params + self.experts_per_token * self.expert_params + self.router_params
        return self.layers * per_layer + self.vocab * self.hidden

    def kv_bytes_per_token(self, bytes_per_value: float) -> float:
        """KV cache per token for the whole model: 2 (K and V) x layers x kv_heads x head_dim x bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_value


def _llama3(name: str, layers: int, hidden: int, ffn: int, heads: int, display: str) -> LlmArchitecture:
    return LlmArchitecture(name, "llama3", layers, hidden, ffn, heads, 8, 128256, max_context=131072, display=display,
                           rope_theta=500_000)


def _llama2(name: str, layers: int, hidden: int, ffn: int, heads: int, kv: int, display: str) -> LlmArchitecture:
    return LlmArchitecture(name, "llama2", layers, hidden, ffn, heads, kv, 32000, max_context=4096, display=display,
                           rope_theta=10_000)


MODELS: dict[str, LlmArchitecture] = {
    m.name: m
    for m in (
        _llama3("llama3-8b", 32, 4096, 14336, 32, "Llama 3 8B"),
        _llama3("llama3-70b", 80, 8192, 28672, 64, "Llama 3 70B"),
        _llama3("llama3-405b", 126, 16384, 53248, 128, "Llama 3 405B"),
        _llama2("llama2-7b", 32, 4096, 11008, 32, 32, "Llama 2 7B"),
        _llama2("llama2-13b", 40, 5120, 13824, 40, 40, "Llama 2 13B"),
        _llama2("llama2-70b", 80, 8192, 28672, 64, 8, "Llama 2 70B"),
        LlmArchitecture(
            "gpt3-175b", "gpt3", 96, 12288, 4 * 12288, 96, 96, 50257,
            tied_embeddings=True, gated_mlp=False, norm="layernorm", linear_bias=True,
            learned_positions=2048, dropout=True, max_context=2048, display="GPT-3 175B",
        ),
        LlmArchitecture(
            "mixtral-8x7b", "mixtral", 32, 4096, 14336, 32, 8, 32000,
            experts=8, experts_per_token=2, max_context=32768, display="Mixtral 8x7B", rope_theta=1_000_000,
        ),
    )
}


def _aliases() -> dict[str, str]:
    out: dict[str, str] = {}
    for size in ("8b", "70b", "405b"):
        for prefix in ("llama3.1-", "llama-3-", "llama-3.1-", "llama3_", "meta-llama-3-", "meta-llama-3.1-"):
            out[f"{prefix}{size}"] = f"llama3-{size}"
    for size in ("7b", "13b", "70b"):
        for prefix in ("llama-2-", "llama2_", "meta-llama-2-"):
            out[f"{prefix}{size}"] = f"llama2-{size}"
    out.update({"gpt3": "gpt3-175b", "gpt-3": "gpt3-175b", "gpt-3-175b": "gpt3-175b", "gpt3_175b": "gpt3-175b"})
    out.update({"mixtral": "mixtral-8x7b", "mixtral-8x7b-v0.1": "mixtral-8x7b", "mixtral8x7b": "mixtral-8x7b"})
    return out


MODEL_ALIASES: dict[str, str] = _aliases()


def model(name: str) -> LlmArchitecture:
    """Look a catalog model up by name or alias; KeyError with a suggestion otherwise."""
    return lookup(MODELS, MODEL_ALIASES, name, "model")


def known_model_names() -> list[str]:
    return sorted(MODELS) + sorted(MODEL_ALIASES)


def custom_architecture(
    name: str,
    *,
    layers: int,
    hidden: int,
    ffn_hidden: int,
    heads: int,
    kv_heads: int,
    vocab: int,
    family: str = "custom",
    experts: int = 1,
    experts_per_token: int = 1,
    tied_embeddings: bool = False,
    rope_theta: int = 10_000,
    qkv_bias: bool = False,
    norm_epsilon: float = 1e-5,
    norm: str = "rmsnorm",
    gated_mlp: bool = True,
    max_context: int = 0,
    linear_bias: bool = False,
    learned_positions: int = 0,
) -> LlmArchitecture:
    """A decoder-only architecture from its hyper-parameters: Llama-style (SwiGLU, RMSNorm, rotary,
    no biases) unless the keywords say otherwise (Qwen2: ``qkv_bias=True``, ``rope_theta=1_000_000``;
    GPT-2/3: ``norm="layernorm"``, ``gated_mlp=False``, ``linear_bias=True``, ``tied_embeddings=True``,
    ``learned_positions=1024``).

    ValueError when the numbers are inconsistent (hidden not a multiple of heads ...).
    """
    for what, value in (("layers", layers), ("hidden", hidden), ("ffn", ffn_hidden), ("heads", heads),
                        ("kv-heads", kv_heads), ("vocab", vocab), ("experts", experts)):
        if value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value}")
    if learned_positions < 0:
        raise ValueError(f"learned positions must be 0 (rotary) or more, got {learned_positions}")
    return LlmArchitecture(
        name, family, layers, hidden, ffn_hidden, heads, kv_heads, vocab,
        experts=experts, experts_per_token=experts_per_token, tied_embeddings=tied_embeddings,
        rope_theta=rope_theta, qkv_bias=qkv_bias, norm_epsilon=norm_epsilon, norm=norm, gated_mlp=gated_mlp,
        max_context=max_context or learned_positions, linear_bias=linear_bias, learned_positions=learned_positions,
    )


def resolve_model(name: str, custom: dict | None = None) -> LlmArchitecture:
    """A blueprint's model reference: a key of its ``catalog.models`` (custom architectures) or a
    catalog name.

    ``custom`` maps names to :class:`aiinfra.spec.models.ModelArchitecture` (or anything with the
    same attributes), or to an :class:`LlmArchitecture` already built.
    """
    return resolve_with(name, custom, _declared_architecture, model, "models")


def _declared_architecture(name: str, spec: Any) -> LlmArchitecture:
    if isinstance(spec, LlmArchitecture):  # already resolved (aiinfra size with --layers ...)
        return spec
    return custom_architecture(
        name,
        layers=spec.layers, hidden=spec.hidden, ffn_hidden=spec.ffn_hidden, heads=spec.heads,
        kv_heads=spec.kv_heads, vocab=spec.vocab, family=spec.family, experts=spec.experts,
        experts_per_token=spec.experts_per_token, tied_embeddings=spec.tied_embeddings,
        rope_theta=spec.rope_theta, qkv_bias=spec.qkv_bias, norm_epsilon=spec.norm_epsilon, norm=spec.norm,
        gated_mlp=spec.mlp == "swiglu", max_context=spec.max_context or 0,
        linear_bias=getattr(spec, "linear_bias", False), learned_positions=getattr(spec, "learned_positions", 0),
    )


def is_builtin_model(name: str) -> bool:
    key = name.strip().lower()
    return key in MODELS or key in MODEL_ALIASES
