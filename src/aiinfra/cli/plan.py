"""``aiinfra size serve|train`` and ``aiinfra plan``: the planner on the command line.

``size_app`` is a Typer sub-app (mounted as ``aiinfra size``); :func:`register` mounts it and the
``plan`` command on the main app. The table and JSON helpers are reused by ``aiinfra plan``.
Exit codes: 0 ok; 1 the request cannot be planned (PlanError) or the blueprint has plan errors;
2 usage (unknown names, conflicting or malformed flags).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from aiinfra.catalog.defaults import DEFAULT_GPU_ANNUAL_FAILURE_RATE
from aiinfra.catalog.formats import numeric_format
from aiinfra.catalog.models import LlmArchitecture, custom_architecture, model
from aiinfra.cli.console import console
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.common import DAY_S, GB, GIB, PlanError
from aiinfra.plan.failures import FailurePlan, JobGoodput
from aiinfra.plan.power import PowerPlan
from aiinfra.plan.reliability import ReliabilityPlan, plan_reliability
from aiinfra.plan.serving import ServingPlan, plan_serving, serving_request_from_deployment
from aiinfra.plan.training import TrainingPlan, plan_training, training_request_from_job, with_overrides
from aiinfra.spec.models import ServingDeployment, TrainingJob
from aiinfra.spec.units import parse_bytes_per_s

size_app = typer.Typer(
    name="size",
    help="Size one training job or serving deployment from flags (no blueprint needed).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Plan = TrainingPlan | ServingPlan | ReliabilityPlan | PowerPlan
SpecModel = TypeVar("SpecModel", bound=BaseModel)


class _Usage(Exception):
    """Bad flags: exit 2."""


# ---------------------------------------------------------------- parsing helpers

_COUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([kKMBGT]?)\s*$")
_SCALE = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def parse_count(value: str, what: str) -> float:
    """``15e12``, ``15T``, ``300B``, ``2.5M`` -> a number."""
    m = _COUNT.match(value)
    if not m:
        raise _Usage(f"{what}: '{value}' is not a number (e.g. 15e12, 15T, 300B)")
    return float(m.group(1)) * _SCALE[m.group(2)]


def _auto_or_int(value: str | None, what: str) -> int | str | None:
    """A layout flag as a blueprint key takes it: a positive integer or 'auto' (None: not given)."""
    if value is None:
        return None
    if value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except ValueError:
        raise _Usage(f"--{what}: expected a positive integer or 'auto', got '{value}'") from None
    if n < 1:
        raise _Usage(f"--{what}: expected a positive integer or 'auto', got {n}")
    return n


def _given(**values: Any) -> dict[str, Any]:
    """The flags the user gave: the others take the blueprint's defaults."""
    return {k: v for k, v in values.items() if v is not None}


#: Name and node group of the blueprint entry ``aiinfra size`` builds (the plan shows no name).
SIZE_NAME = "size"
#: Blueprint keys whose flag is named differently.
_FLAG_OF = {"virtual_pipeline_stages": "vpp", "kv_cache_dtype": "kv-dtype", "quantization": "quant",
            "target_tokens_per_s": "target-tokens-per-s", "speculative": "draft"}


def _spec(cls: type[SpecModel], data: dict[str, Any]) -> SpecModel:
    """The blueprint entry the flags describe, validated as the blueprint would be (bad values: exit 2)."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else ""
        raise _Usage(f"--{_FLAG_OF.get(key, key.replace('_', '-'))}: {first['msg']}") from None


def _model_key(name: str | None, arch: LlmArchitecture) -> tuple[str, dict[str, Any] | None]:
    """The entry's ``model`` and the custom architectures it may name (the blueprint's ``models:``)."""
    return (name, None) if name else (arch.name, {arch.name: arch})


def _quantization(quant: str, dtype: str | None) -> dict[str, str]:
    """``--quant`` as the blueprint's ``quantization`` (and ``dtype`` for a 16-bit format)."""
    fmt = numeric_format(quant)  # KeyError with a suggestion for unknown names
    if fmt.name in get_args(ServingDeployment.model_fields["quantization"].annotation):
        return {"quantization": fmt.name}
    if not fmt.quantized:  # bf16 / fp16 ("none"): served in that dtype
        if dtype is not None and dtype != fmt.name:
            raise _Usage(f"--quant {quant} and --dtype {dtype} disagree")
        return {"quantization": "none", "dtype": fmt.name}
    raise _Usage(f"--quant {quant}: not a quantization a deployment can serve")


def _architecture(
    name: str | None, layers: int | None, hidden: int | None, ffn: int | None, heads: int | None,
    kv_heads: int | None, vocab: int | None, experts: int, experts_per_token: int,
) -> LlmArchitecture:
    custom = {"layers": layers, "hidden": hidden, "ffn": ffn, "heads": heads, "kv-heads": kv_heads, "vocab": vocab}
    given = {k for k, v in custom.items() if v is not None}
    if name and given:
        raise _Usage(f"give --model or the custom architecture flags ({', '.join('--' + k for k in sorted(given))}), not both")
    if name:
        return model(name)
    if not given:
        raise _Usage("give --model NAME or a custom architecture: --layers --hidden --ffn --heads --kv-heads --vocab")
    missing = [f"--{k}" for k, v in custom.items() if v is None]
    if missing:
        raise _Usage(f"a custom architecture also needs {', '.join(missing)}")
    try:
        return custom_architecture(
            "custom", layers=layers, hidden=hidden, ffn_hidden=ffn, heads=heads,  # type: ignore[arg-type]
            kv_heads=kv_heads if kv_heads is not None else heads,  # type: ignore[arg-type]
            vocab=vocab, experts=experts, experts_per_token=experts_per_token,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def _run(action: Callable[[], None]) -> None:
    """Run a command body; turn planner and usage errors into messages and exit codes."""
    err = console(stderr=True)
    try:
        action()
    except PlanError as exc:
        err.print(f"error: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    except KeyError as exc:
        err.print(f"error: {exc.args[0]}", style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except _Usage as exc:
        err.print(f"error: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


# ---------------------------------------------------------------- tables


def _gb(n: float | None) -> str:
    return "-" if n is None else f"{n / GB:,.1f} GB ({n / GIB:,.1f} GiB)"


def _num(x: float | None, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _kv_table(title: str, rows: list[tuple[str, str]]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value")
    for k, v in rows:
        t.add_row(k, v)
    return t


def training_table(plan: TrainingPlan) -> Table:
    r, lay, mem = plan.request, plan.layout, plan.memory
    title = f"training{' ' + r.name if r.name else ''}: {r.model.title} on {r.gpus} x {r.gpu.name}"
    days = plan.training_time_s / DAY_S if plan.training_time_s is not None else None
    rows = [
        ("parameters", f"{r.model.params:,} ({r.model.active_params:,} active)"),
        ("layout", f"{lay.short()}, micro-batch {lay.micro_batch}, {lay.num_microbatches} micro-batches"),
        ("global batch", f"{lay.global_batch:,} sequences x {r.seq_len:,} = {plan.tokens_per_step:,} tokens"),
        ("recompute / ZeRO", f"{lay.recompute} / stage {lay.zero_stage} ({r.framework}, {r.precision})"),
        (f"memory per GPU ({mem.stage if mem.stage.startswith('stage') else mem.stage + ' stage'})",
         f"{_gb(mem.total_bytes)} of {mem.gpu_memory_bytes / GIB:.0f} GiB"),
        ("  weights", _gb(mem.weights_bytes)),
        ("  gradients", _gb(mem.gradients_bytes)),
        ("  optimizer states", _gb(mem.optimizer_bytes)),
        ("  activations", _gb(mem.activations_bytes)),
        ("  overhead", _gb(mem.overhead_bytes)),
        ("step time", f"{plan.step_time_s:.2f} s ({plan.efficiency_source})"),
        ("  pipeline bubble", f"{plan.estimate.bubble_fraction:.1%}"),
        ("  exposed comm TP/CP/PP/DP", " / ".join(f"{x:.3f} s" for x in (
            plan.estimate.tp_comm_s, plan.estimate.cp_comm_s, plan.estimate.pp_comm_s, plan.estimate.dp_comm_s))),
        ("throughput", f"{plan.tokens_per_s:,.0f} tokens/s ({plan.tokens_per_s / r.gpus:,.0f} per GPU)"),
        ("MFU / achieved", f"{plan.mfu:.1%} / {plan.achieved_tflops:.0f} TFLOP/s per GPU"),
    ]
    if r.tokens is not None:
        rows += [
            ("token budget", f"{r.tokens:.3g} tokens"),
            ("time", f"{days:,.1f} days"),
            ("GPU-hours", _num(plan.gpu_hours)),
            ("energy", f"{plan.energy_mwh:,.0f} MWh (PUE {r.pue:g})"),
        ]
    for w in plan.warnings:
        rows.append(("warning", w))
    return _kv_table(title, rows)


def serving_table(plan: ServingPlan) -> Table:
    r = plan.request
    title = f"serving{' ' + r.name if r.name else ''}: {r.model.title} {r.format.name} on {r.gpu.name}"
    rows = [
        ("parallelism", f"TP {plan.tp} x PP {plan.pp} = {plan.gpus_per_replica} GPUs per replica"),
        ("weights", f"{_gb(plan.weights_bytes)} total, {_gb(plan.weights_per_gpu_bytes)} per GPU"),
        ("memory budget", f"{r.gpu_memory_utilization:g} x {r.gpu.memory_bytes / GIB:.0f} GiB"),
        ("activations + runtime", f"{_gb(plan.activation_bytes)} + {_gb(plan.non_torch_bytes)}"),
        ("KV cache per GPU", _gb(plan.kv_cache_per_gpu_bytes)),
        ("KV bytes per token", f"{plan.kv_bytes_per_token:,.0f} ({plan.kv_bytes_per_token_per_gpu:,.0f} per GPU)"),
        ("KV blocks (16 tokens)", f"{plan.num_blocks:,} = {plan.kv_cache_tokens:,} tokens"),
        (f"sequences of {r.max_model_len:,}", f"{plan.max_concurrent_sequences} at once "
                                             f"(max concurrency {plan.max_concurrency:.2f}x)"),
    ]
    if plan.draft_weights_per_gpu_bytes:
        rows.insert(2, ("draft weights per GPU", _gb(plan.draft_weights_per_gpu_bytes)))
    for p in plan.roofline:
        rows.append((f"decode batch {p.batch}", f"{p.tokens_per_s:,.0f} tokens/s ({p.step_s * 1e3:.1f} ms/step, {p.bound})"))
    if plan.speculation:
        s = plan.speculation
        rows.append(("speculative", f"{s.draft}, {s.num_tokens} tokens at {s.acceptance_rate:g}: "
                                    f"{s.expected_tokens_per_step:.2f} tokens/step, speedup {s.speedup:.2f}x"))
    rows.append(("replicas", f"{plan.replicas} ({plan.gpus} GPUs, {plan.nodes} nodes)"))
    for w in plan.warnings:
        rows.append(("warning", w))
    return _kv_table(title, rows)


def reliability_table(plan: ReliabilityPlan, title: str = "reliability") -> Table:
    return _kv_table(title, [
        ("MTBF", f"{plan.mtbf_s / 3600:,.1f} h ({plan.failures_per_day:.2f} failures/day, AFR {plan.annual_failure_rate:.0%})"),
        ("checkpoint", f"{_gb(plan.checkpoint_bytes)}, {plan.checkpoint_write_s:,.1f} s at "
                       f"{plan.storage_bandwidth_b_s / GB:,.0f} GB/s"),
        ("interval (Daly)", f"{plan.interval_s / 60:,.1f} min (Young {plan.young_interval_s / 60:,.1f} min)"),
        ("goodput", f"{plan.goodput:.1%} (restart {plan.restart_s / 60:.0f} min)"),
    ])


def failures_table(plan: FailurePlan) -> Table:
    """Node failures and the spare pool of each GPU group (``aiinfra plan``): one column per group."""
    other = plan.node_non_gpu_annual_failure_rate
    t = Table(title=f"failures (AFR {plan.gpu_annual_failure_rate:.1%} per GPU-year"
                    f"{f' + {other:g} per node-year' if other else ''}, repair {plan.node_repair_s / DAY_S:g} days, "
                    f"spares for {plan.spare_target_availability:.2%} of the time)", title_justify="left")
    t.add_column("", style="bold")
    for g in plan.groups:
        t.add_column(g.name, justify="right")
    t.add_column("all GPU nodes", justify="right")
    groups = plan.groups

    def row(what: str, cells: list[str], total: str = "") -> None:
        t.add_row(what, *cells, total)

    row("nodes", [f"{g.nodes:,}" for g in groups], f"{sum(g.nodes for g in groups):,}")
    row("node failures / month", [f"{g.failures_per_month:,.2f}" for g in groups], f"{plan.failures_per_month:,.2f}")
    row("SUs x nodes (largest)", [f"{g.scalable_units} x {g.nodes_per_su}" for g in groups])
    row("nodes down per SU, mean", [f"{g.mean_down_per_su:.3f}" for g in groups])
    row("spares per SU recommended", [str(g.recommended_spares_per_su) for g in groups])
    row("spares per SU declared", [str(g.spares_per_su) for g in groups])
    row("  cover the SU", [f"{g.spare_coverage:.2%}" for g in groups])
    row("out of service now", [str(g.out_of_service) for g in groups], str(sum(g.out_of_service for g in groups)))
    return t


def goodput_table(job: JobGoodput) -> Table:
    """A training job's run under failures: first-order, expected (exact) and Monte-Carlo."""
    r, mc = job.run, job.simulation
    rows = [
        ("failures", f"MTBF {r.mtbf_s / 3600:,.1f} h on {job.nodes:,} node{'s' if job.nodes != 1 else ''}, "
                     f"{job.expected_failures:,.1f} expected over the run"
                     + (f" (Monte-Carlo {mc.failures_mean:,.1f})" if mc else "")),
        ("checkpoint / restart", f"every {r.interval_s / 60:,.1f} min ({r.intervals:,} "
                                 f"interval{'s' if r.intervals != 1 else ''}), "
                                 f"{r.checkpoint_write_s:,.1f} s to write, {r.restart_s / 60:,.1f} min to restart"),
        ("work", f"{r.work_s / DAY_S:,.2f} days without failures or checkpoints"),
        ("goodput first-order", f"{job.first_order_goodput:.2%} (Young/Daly: 1 - d/(t+d) - (R + (t+d)/2)/M)"),
        ("goodput expected", f"{job.expected_goodput:.2%}, {job.expected_wall_s / DAY_S:,.2f} days "
                             "(Daly's complete model, exact)"),
    ]
    if mc is not None:
        rows += [
            (f"goodput Monte-Carlo ({mc.runs:,} runs)", f"{mc.goodput:.2%} +/- {mc.goodput_stderr * 100:.2g} % "
                                                        f"(p10 {mc.goodput_p10:.2%}, p90 {mc.goodput_p90:.2%})"),
            ("wall time Monte-Carlo", f"{mc.wall_mean_s / DAY_S:,.2f} days (p10 {mc.wall_p10_s / DAY_S:,.2f}, "
                                      f"p90 {mc.wall_p90_s / DAY_S:,.2f})"),
        ]
    else:
        rows.append(("goodput Monte-Carlo", "skipped: too many failures to simulate"))
    return _kv_table(f"goodput under failures {job.name}", rows)


def power_table(plan: PowerPlan) -> Table:
    budget = "-" if plan.budget_w is None else f"{plan.budget_w / 1e3:,.0f} kW"
    head = "-" if plan.headroom_w is None else f"{plan.headroom_w / 1e3:,.0f} kW"
    return _kv_table("power", [
        ("GPUs at TDP", f"{plan.gpus:,} GPUs, {plan.gpu_power_w / 1e3:,.0f} kW"),
        ("node overhead", f"{plan.nodes:,} nodes, {plan.node_overhead_power_w / 1e3:,.0f} kW"),
        ("IT power", f"{plan.it_power_w / 1e3:,.0f} kW (budget {budget}, headroom {head})"),
        ("facility power", f"{plan.facility_power_w / 1e3:,.0f} kW (PUE {plan.pue:g})"),
        ("within budget", "yes" if plan.fits else "NO"),
    ])


def plan_table(plan: Plan) -> Table:
    if isinstance(plan, TrainingPlan):
        return training_table(plan)
    if isinstance(plan, ServingPlan):
        return serving_table(plan)
    if isinstance(plan, ReliabilityPlan):
        return reliability_table(plan)
    return power_table(plan)


def print_plans(console: Console, plans: Iterable[Plan]) -> None:
    """Print one table per plan."""
    for p in plans:
        console.print(plan_table(p))


def plans_to_json(plans: Iterable[Plan]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in plans]


def plan_cluster_tables(console: Console, cluster: ClusterPlan) -> None:
    """``aiinfra plan``'s human output: every training job (with its reliability), every serving
    deployment, the power summary, and failures (spares per SU, each job's goodput)."""
    for t, rel in cluster.training:
        console.print(training_table(t))
        if rel is not None:
            console.print(reliability_table(rel, f"reliability {t.request.name}".strip()))
    for s in cluster.serving:
        console.print(serving_table(s))
    if cluster.power is not None:
        console.print(power_table(cluster.power))
    if cluster.failures is not None:
        console.print(failures_table(cluster.failures))
        for job in cluster.failures.training:
            console.print(goodput_table(job))
    if cluster.claims:
        table = Table(title="claims checked")
        for col in ("claim", "verdict", "the numbers"):
            table.add_column(col)
        for c in cluster.claims:
            parts = "".join(f"\n{part}: {'yes' if ok else 'no'}" for part, ok in c.parts.items())
            table.add_row(c.claim, c.status + (parts if c.status == "partly" else ""), c.verdict)
        console.print(table)


# ---------------------------------------------------------------- aiinfra size serve


# Options both `size` commands take: a custom architecture instead of --model, and --json.
LayersOpt = Annotated[int | None, typer.Option("--layers", help="custom model: layers")]
HiddenOpt = Annotated[int | None, typer.Option("--hidden", help="custom model: hidden size")]
FfnOpt = Annotated[int | None, typer.Option("--ffn", help="custom model: FFN size")]
HeadsOpt = Annotated[int | None, typer.Option("--heads", help="custom model: attention heads")]
KvHeadsOpt = Annotated[int | None, typer.Option("--kv-heads", help="custom model: KV heads")]
VocabOpt = Annotated[int | None, typer.Option("--vocab", help="custom model: vocabulary")]
ExpertsOpt = Annotated[int, typer.Option("--experts", help="custom model: MoE experts")]
ExpertsPerTokenOpt = Annotated[int, typer.Option("--experts-per-token", help="custom MoE: experts per token")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


@size_app.command("serve")
def size_serve(
    model_name: Annotated[str | None, typer.Option("--model", "-m", help="catalog model, e.g. llama3-70b")] = None,
    gpu_name: Annotated[str, typer.Option("--gpu", help="GPU model, e.g. h100-80gb")] = "h100-80gb",
    quant: Annotated[str | None, typer.Option("--quant", help="none|fp8|int8|awq-int4|gptq-int4")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="model dtype: bf16|fp16")] = None,
    kv_dtype: Annotated[str | None, typer.Option("--kv-dtype", help="auto (model dtype) | fp8")] = None,
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", help="tokens per sequence")] = None,
    util: Annotated[float | None, typer.Option("--gpu-memory-utilization", help="vLLM memory fraction")] = None,
    tp: Annotated[str | None, typer.Option("--tp", help="tensor parallel size or auto")] = None,
    pp: Annotated[str | None, typer.Option("--pp", help="pipeline parallel size or auto")] = None,
    replicas: Annotated[int | None, typer.Option("--replicas", help="replicas (default: from the target)")] = None,
    target: Annotated[float | None, typer.Option("--target-tokens-per-s", help="aggregate decode tokens/s")] = None,
    draft: Annotated[str | None, typer.Option("--draft", help="speculative draft model")] = None,
    num_spec: Annotated[int | None, typer.Option("--num-speculative-tokens", help="draft length")] = None,
    acceptance: Annotated[float | None, typer.Option("--acceptance-rate", help="per-token acceptance")] = None,
    context: Annotated[int | None, typer.Option("--context-len", help="roofline context (default max-model-len/2)")] = None,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node")] = 8,
    layers: LayersOpt = None,
    hidden: HiddenOpt = None,
    ffn: FfnOpt = None,
    heads: HeadsOpt = None,
    kv_heads: KvHeadsOpt = None,
    vocab: VocabOpt = None,
    experts: ExpertsOpt = 1,
    experts_per_token: ExpertsPerTokenOpt = 1,
    as_json: JsonOpt = False,
) -> None:
    """Weights, KV cache, blocks, TP/PP, decode roofline, speculation and replicas of a deployment.

    Unset flags take the defaults of a blueprint's serving: entry; the request is planned exactly
    as the blueprint's would be.
    \f
    The request is built by :func:`aiinfra.plan.serving.serving_request_from_deployment`."""

    def body() -> None:
        arch = _architecture(model_name, layers, hidden, ffn, heads, kv_heads, vocab, experts, experts_per_token)
        if draft is None and (num_spec is not None or acceptance is not None):
            raise _Usage("--num-speculative-tokens and --acceptance-rate need --draft")
        fields: dict[str, Any] = {"dtype": dtype, "kv_cache_dtype": kv_dtype, "max_model_len": max_model_len,
                                  "gpu_memory_utilization": util, "tp": _auto_or_int(tp, "tp"),
                                  "pp": _auto_or_int(pp, "pp"), "replicas": replicas, "target_tokens_per_s": target}
        if quant is not None:
            fields.update(_quantization(quant, dtype))
        if draft is not None:
            fields["speculative"] = _given(draft_model=draft, num_tokens=num_spec, acceptance_rate=acceptance)
        key, custom = _model_key(model_name, arch)
        dep = _spec(ServingDeployment, {"name": SIZE_NAME, "model": key, "node_group": SIZE_NAME, **_given(**fields)})
        req = replace(serving_request_from_deployment(dep, gpu_name, gpus_per_node, custom),
                      name="", avg_context_len=context)
        plan = plan_serving(req)
        if as_json:
            _emit_json(plan.to_dict())
        else:
            console().print(serving_table(plan))

    _run(body)


# ---------------------------------------------------------------- aiinfra size train


@size_app.command("train")
def size_train(
    model_name: Annotated[str | None, typer.Option("--model", "-m", help="catalog model, e.g. llama3-405b")] = None,
    gpu_name: Annotated[str, typer.Option("--gpu", help="GPU model")] = "h100-80gb",
    gpus: Annotated[int | None, typer.Option("--gpus", help="GPUs of the job")] = None,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node")] = 8,
    tp: Annotated[str | None, typer.Option("--tp", help="tensor parallel or auto")] = None,
    pp: Annotated[str | None, typer.Option("--pp", help="pipeline parallel or auto")] = None,
    dp: Annotated[str | None, typer.Option("--dp", help="data parallel or auto")] = None,
    cp: Annotated[str | None, typer.Option("--cp", help="context parallel or auto")] = None,
    vpp: Annotated[str | None, typer.Option("--vpp", help="virtual pipeline stages or auto")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", help="tokens per sequence")] = None,
    micro_batch: Annotated[int | None, typer.Option("--micro-batch", help="sequences per micro-batch")] = None,
    global_batch: Annotated[int | None, typer.Option("--global-batch", help="sequences per step")] = None,
    global_batch_tokens: Annotated[str | None, typer.Option("--global-batch-tokens", help="tokens per step")] = None,
    precision: Annotated[str | None, typer.Option("--precision", help="bf16|fp8")] = None,
    framework: Annotated[str | None, typer.Option("--framework", help="megatron|deepspeed")] = None,
    zero_stage: Annotated[int | None, typer.Option("--zero-stage", help="0-3 (Megatron: 0 or 1)")] = None,
    fsdp: Annotated[bool | None, typer.Option("--fsdp/--no-fsdp", help="fully sharded (DeepSpeed ZeRO-3)")] = None,
    recompute: Annotated[str | None, typer.Option("--recompute", help="none|selective|full")] = None,
    sequence_parallel: Annotated[bool | None, typer.Option("--sequence-parallel/--no-sequence-parallel")] = None,
    distributed_optimizer: Annotated[
        bool | None, typer.Option("--distributed-optimizer/--no-distributed-optimizer")] = None,
    mfu: Annotated[float | None, typer.Option("--mfu", help="end-to-end MFU (fraction of peak)")] = None,
    achieved: Annotated[float | None, typer.Option("--achieved-tflops", help="end-to-end TFLOP/s per GPU")] = None,
    tokens: Annotated[str | None, typer.Option("--tokens", help="token budget, e.g. 15T or 15e12")] = None,
    allow_tp_across_nodes: Annotated[bool, typer.Option("--allow-tp-across-nodes")] = False,
    storage_bandwidth: Annotated[str, typer.Option("--storage-bandwidth", help="checkpoint bandwidth")] = "1TB/s",
    afr: Annotated[float, typer.Option("--afr", help="per-GPU annual failure rate")] = DEFAULT_GPU_ANNUAL_FAILURE_RATE,
    layers: LayersOpt = None,
    hidden: HiddenOpt = None,
    ffn: FfnOpt = None,
    heads: HeadsOpt = None,
    kv_heads: KvHeadsOpt = None,
    vocab: VocabOpt = None,
    experts: ExpertsOpt = 1,
    experts_per_token: ExpertsPerTokenOpt = 1,
    as_json: JsonOpt = False,
) -> None:
    """Memory per GPU, parallel layout, step time, tokens/s and the token budget of a training job.

    Unset flags take the defaults of a blueprint's training: entry; the request is planned exactly
    as the blueprint's would be (the same layout search).
    \f
    The request is built by :func:`aiinfra.plan.training.training_request_from_job`."""

    def body() -> None:
        arch = _architecture(model_name, layers, hidden, ffn, heads, kv_heads, vocab, experts, experts_per_token)
        layout = {k: _auto_or_int(v, k) for k, v in (("tp", tp), ("pp", pp), ("dp", dp), ("cp", cp), ("vpp", vpp))}
        n = gpus
        if n is None:
            sizes = [layout[k] for k in ("tp", "pp", "dp", "cp")]
            if not all(isinstance(x, int) for x in sizes):
                raise _Usage("give --gpus N (or all of --tp --pp --dp --cp)")
            n = math.prod(sizes)  # type: ignore[arg-type]
        if global_batch is not None and global_batch_tokens is not None:
            raise _Usage("give --global-batch (sequences) or --global-batch-tokens, not both")
        if mfu is not None and achieved is not None:
            raise _Usage("give --mfu or --achieved-tflops, not both")
        if n > gpus_per_node and n % gpus_per_node:
            raise PlanError(f"{n} GPUs is not a whole number of {gpus_per_node}-GPU nodes")
        per_node = min(n, gpus_per_node)
        gbt = int(parse_count(global_batch_tokens, "--global-batch-tokens")) if global_batch_tokens else None
        budget = parse_count(tokens, "--tokens") if tokens else None
        try:
            bandwidth = parse_bytes_per_s(storage_bandwidth)
        except ValueError as exc:
            raise _Usage(f"--storage-bandwidth: {exc}") from None
        key, custom = _model_key(model_name, arch)
        given = _given(
            tp=layout["tp"], pp=layout["pp"], dp=layout["dp"], cp=layout["cp"], virtual_pipeline_stages=layout["vpp"],
            seq_len=seq_len, micro_batch=micro_batch, global_batch=global_batch, global_batch_tokens=gbt,
            precision=precision, framework=framework, zero_stage=zero_stage, fsdp=fsdp, recompute=recompute,
            sequence_parallel=sequence_parallel, distributed_optimizer=distributed_optimizer, mfu=mfu,
        )
        # a blueprint job always has a token budget; without --tokens the plan has none (no time, no energy)
        job = _spec(TrainingJob, {"name": SIZE_NAME, "model": key, "node_group": SIZE_NAME, "nodes": n // per_node,
                                  "tokens": budget if budget is not None else 1.0, **given})
        req = with_overrides(
            training_request_from_job(job, gpu_name, per_node, custom),
            name="", tokens=budget, achieved_tflops=achieved, allow_tp_across_nodes=allow_tp_across_nodes,
        )
        plan = plan_training(req)
        rel = plan_reliability(n, arch.params, bandwidth, afr)
        if as_json:
            _emit_json({**plan.to_dict(), "reliability": rel.to_dict()})
        else:
            screen = console()
            screen.print(training_table(plan))
            screen.print(reliability_table(rel))

    _run(body)


# ---------------------------------------------------------------- mounting


def register(app: typer.Typer, load: Callable[[str | None, Path | None], Any]) -> None:
    """Mount ``size`` and ``plan`` on the main CLI. ``load(stack, file)`` returns the loaded
    blueprint (an object with ``.cluster.blueprint``) or raises the CLI's own errors."""
    app.add_typer(size_app, name="size")

    @app.command("plan")
    def plan_cmd(
        stack: Annotated[str | None, typer.Option("--stack", "-s", help="environment (stacks/Pulumi.<ENV>.yaml)")] = None,
        file: Annotated[Path | None, typer.Option("--file", "-f", help="a blueprint file instead of --stack")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ) -> None:
        """Capacity plan of every training job and serving deployment, reliability, power and failures."""
        # load() runs the planner's preflight: errors stop here with every problem listed, and
        # warnings come back with the blueprint's `silence:` applied.
        loaded = load(stack, file)
        cluster = loaded.cluster
        result = loaded.plan
        if as_json:
            _emit_json(result.to_dict())
        else:
            plan_cluster_tables(console(), result)
        err = console(stderr=True)
        for p in loaded.warnings:
            err.print(p.format(cluster.source), style="yellow", markup=False, highlight=False)
