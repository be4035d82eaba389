"""Checks of sizing claims (the statements a centre plans by, e.g. "Llama 3 70B trains in 7 days on
512 x 8 H100"), as functions: each returns the numbers and whether each part of the claim holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiinfra.catalog.gpus import gpu
from aiinfra.catalog.models import model
from aiinfra.plan.common import DAY_S, GB, GIB, PlanError
from aiinfra.plan.serving import ServingRequest, plan_serving, weight_bytes
from aiinfra.plan.training import TrainingRequest, plan_training

#: Meta's model card: Llama 3 70B was pre-trained on over 15T tokens.
LLAMA3_TOKENS = 15e12


@dataclass(frozen=True)
class ClaimCheck:
    claim: str
    parts: dict[str, bool]  # each statement the claim makes and whether the planner agrees
    numbers: dict[str, Any]
    verdict: str  # the numbers in words

    @property
    def status(self) -> str:
        """``holds`` (every part), ``partly`` (some parts) or ``does not`` (none)."""
        true = sum(self.parts.values())
        return "holds" if true == len(self.parts) else "partly" if true else "does not"

    @property
    def holds(self) -> bool:
        return self.status == "holds"

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "holds": self.holds, "status": self.status, "parts": self.parts,
                "verdict": self.verdict, **self.numbers}


def check_training_days_claim(
    model_name: str = "llama3-70b",
    nodes: int = 512,
    gpus_per_node: int = 8,
    gpu_name: str = "h100-80gb",
    claimed_days: float = 7.0,
    tokens: float = LLAMA3_TOKENS,
    mfu: float | None = None,
    seq_len: int = 8192,
) -> ClaimCheck:
    """'<model> trained in <days> days on <nodes> x <gpus_per_node> <gpu>': days for ``tokens`` at
    the planner's layout and MFU (estimated, or the one given), and tokens that fit in the days."""
    req = TrainingRequest(
        model=model(model_name), gpu=gpu(gpu_name), gpus=nodes * gpus_per_node, gpus_per_node=gpus_per_node,
        seq_len=seq_len, recompute=None, vpp=None, zero_stage=None, tokens=tokens, mfu=mfu,
        global_batch_tokens=16 * 2**20 if nodes * gpus_per_node >= 2048 else None,
    )
    plan = plan_training(req)
    days = plan.training_time_s / DAY_S
    tokens_in_claim = plan.tokens_per_s * claimed_days * DAY_S
    holds = days <= claimed_days
    m = req.model.title
    verdict = (
        f"{m} on {req.gpus} {req.gpu.name} at {plan.mfu:.0%} MFU ({plan.layout.short()}) needs "
        f"{days:.1f} days for {tokens / 1e12:g}T tokens; {claimed_days:g} days train "
        f"{tokens_in_claim / 1e12:.2f}T tokens"
    )
    return ClaimCheck(
        f"{m} trained in {claimed_days:g} days on {nodes} x {gpus_per_node} {req.gpu.name}",
        {f"{tokens / 1e12:g}T tokens in {claimed_days:g} days": holds},
        {"days_needed": days, "tokens": tokens, "tokens_in_claimed_days": tokens_in_claim, "mfu": plan.mfu,
         "tokens_per_s": plan.tokens_per_s, "layout": plan.layout.short()},
        verdict,
    )


def check_quantized_fits_claim(
    model_name: str = "llama3-70b",
    weight_format: str = "awq-int4",
    gpu_name: str = "h100-80gb",
    claimed_gb: float = 35.0,
    max_model_len: int = 8192,
    gpu_memory_utilization: float = 0.9,
) -> ClaimCheck:
    """'<model> INT4 = <claimed_gb> GB, runs on one <gpu>': the real weight size (16-bit embeddings
    and group scales included), and the KV cache left on one GPU. Two parts: the size (within 5 %,
    ``size_claim_holds``) and one GPU (room for at least one max_model_len sequence, ``fits_one_gpu``);
    one of the two makes the claim hold ``partly``."""
    m = model(model_name)
    weights = weight_bytes(m, weight_format).total
    naive = m.params * 0.5
    req = ServingRequest(
        m, gpu(gpu_name), weight_format=weight_format, max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization, tp=1, pp=1,
    )
    try:
        plan = plan_serving(req)
        kv, seqs, fits = plan.kv_cache_per_gpu_bytes, plan.max_concurrent_sequences, True
        tokens = plan.kv_cache_tokens
    except PlanError:
        kv, seqs, fits, tokens = 0.0, 0, False, 0
    size_ok = abs(weights / GB - claimed_gb) / claimed_gb <= 0.05
    size = f"{m.title} {weight_format} weights are {weights / GB:.1f} GB ({weights / GIB:.1f} GiB)"
    if not size_ok:
        size += (f", not {claimed_gb:g} GB (the bare 4 bits x {m.params / 1e9:.1f}B parameters = {naive / GB:.1f} GB "
                 "leaves out 16-bit embeddings/lm_head and group scales)")
    verdict = size + (
        f"; it runs on one {req.gpu.name}: at {gpu_memory_utilization:g} {kv / GIB:.1f} GiB remain for the KV cache, "
        f"{tokens:,} tokens, {seqs} sequences of {max_model_len}" if fits
        else f"; it does not fit one {req.gpu.name} at {gpu_memory_utilization:g} with a {max_model_len}-token sequence"
    )
    return ClaimCheck(
        f"{m.title} INT4 = {claimed_gb:g} GB (one {req.gpu.name})",
        {f"{claimed_gb:g} GB": size_ok, f"one {req.gpu.name}": fits},
        {"size_claim_holds": size_ok, "weights_bytes": weights, "naive_4bit_bytes": naive, "fits_one_gpu": fits, "kv_cache_bytes": kv,
         "kv_cache_tokens": tokens, "max_concurrent_sequences": seqs},
        verdict,
    )
