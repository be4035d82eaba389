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

from aiinfra.catalog.defaults import DEFAULT_GPU_ANNUAL_FAILURE_RATE, DEFAULT_JOB_RESTART_MINUTES
from aiinfra.catalog.formats import numeric_format
from aiinfra.catalog.models import LlmArchitecture, custom_architecture, model
from aiinfra.catalog.time_model import time_input_problem
from aiinfra.cli.console import console
from aiinfra.plan.cluster import ClusterPlan, plan_cluster
from aiinfra.plan.common import DAY_S, GB, GIB, PlanError
from aiinfra.plan.failures import FailurePlan, JobGoodput
from aiinfra.plan.power import PowerPlan
from aiinfra.plan.reliability import (
    DEFAULT_INTERRUPTIONS_PER_GPU_YEAR,
    DEFAULT_PLANNED_PER_GPU_YEAR,
    ReliabilityPlan,
    plan_reliability,
)
from aiinfra.plan.serving import ServingPlan, plan_serving, serving_request_from_deployment
from aiinfra.plan.sizing import best_micro_batch, gpus_for_days
from aiinfra.plan.training import TrainingPlan, plan_training, training_request_from_job, with_overrides
from aiinfra.spec.models import ServingDeployment, TrainingJob
from aiinfra.spec.units import parse_bytes, parse_bytes_per_s

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
            "target_tokens_per_s": "target-tokens-per-s", "speculative": "draft", "planner": "assume"}


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
    style: dict[str, Any] | None = None,
) -> LlmArchitecture:
    """A catalog model, or a custom one from its shape; ``style``: the GPT-style and RoPE flags
    (--norm --mlp --linear-bias --tied-embeddings --learned-positions --rope-theta) given."""
    custom = {"layers": layers, "hidden": hidden, "ffn": ffn, "heads": heads, "kv-heads": kv_heads, "vocab": vocab}
    style = {k: v for k, v in (style or {}).items() if v is not None}
    if name and style:
        raise _Usage(f"--model {name} has its own architecture: "
                     f"{', '.join('--' + k.replace('_', '-') for k in sorted(style))} describe a custom one")
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
            norm=style.get("norm", "rmsnorm"), gated_mlp=style.get("mlp", "swiglu") == "swiglu",
            linear_bias=style.get("linear_bias", False), tied_embeddings=style.get("tied_embeddings", False),
            learned_positions=style.get("learned_positions", 0), rope_theta=style.get("rope_theta", 10_000),
        )
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def _assumptions(items: list[str]) -> dict[str, float]:
    """``--assume NAME=VALUE`` flags as a training job's ``planner:`` map."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise _Usage(f"--assume: expected NAME=VALUE with a number, got '{item}'") from None
        if not sep:
            raise _Usage(f"--assume: expected NAME=VALUE, got '{item}'")
    return out


def _plan_with_time_inputs(cluster: Any, items: list[str]) -> ClusterPlan:
    """``aiinfra plan --assume``: the plan again with the inputs added to every training job's
    ``planner:`` map (what the blueprint would say), so reliability and failures follow the new step."""
    try:
        inputs = _assumptions(items)
        for name, value in inputs.items():
            why = time_input_problem(name, value)
            if why:
                raise _Usage(f"--assume: {why}")
    except _Usage as exc:
        console(stderr=True).print(f"error: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    bp = cluster.blueprint
    jobs = [j.model_copy(update={"planner": {**j.planner, **inputs}}) for j in bp.training]
    return plan_cluster(replace(cluster, blueprint=bp.model_copy(update={"training": jobs})))


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
        *([("  gathered layer (ZeRO-3)", _gb(mem.gathered_bytes))] if mem.gathered_bytes else []),
        ("  model states / ZeRO paper's", f"{_gb(mem.model_states_bytes)} / {_gb(mem.paper_model_states_bytes)}"),
        *([(f"  offloaded to {mem.offload_device} per node", f"{_gb(mem.offload_bytes_per_node)} "
                                                             f"(host memory {_gb(mem.host_bytes_per_node)})")]
          if mem.offload_device != "none" else []),
        *([(f"  {r.finetune} adapters per GPU", f"{mem.trainable_params_per_gpu:,} parameters trained, "
                                                f"rank {r.lora_rank}")] if mem.trainable_params_per_gpu else []),
        ("  activations", _gb(mem.activations_bytes)),
        ("  overhead", _gb(mem.overhead_bytes)),
        ("step time", f"{plan.step_time_s:.2f} s ({plan.efficiency_source})"),
        *_step_rows(plan),
        ("throughput", f"{plan.tokens_per_s:,.0f} tokens/s ({plan.tokens_per_s / r.gpus:,.0f} per GPU)"),
        ("MFU / achieved", f"{plan.mfu:.1%} / {plan.achieved_tflops:.0f} TFLOP/s per GPU"),
    ]
    if r.tokens is not None:
        rows += [
            ("token budget", f"{r.tokens:.3g} tokens"),
            ("compute budget", f"{plan.model_flops_6nd_per_token * r.tokens:.3g} FLOPs (6ND), "
                               f"{plan.model_flops_per_token * r.tokens:.3g} with attention (the MFU's)"),
            ("time", f"{days:,.1f} days"),
            ("GPU-hours", _num(plan.gpu_hours)),
            ("energy", f"{plan.energy_mwh:,.0f} MWh (PUE {r.pue:g})"),
        ]
    for w in plan.warnings:
        rows.append(("warning", w))
    return _kv_table(title, rows)


def _step_rows(plan: TrainingPlan) -> list[tuple[str, str]]:
    """The step's parts, its collectives and every step-time input (value and source)."""
    est = plan.estimate
    rows = [
        ("  pipeline bubble", f"{est.bubble_fraction:.1%} ({est.bubble_s:.3f} s)"),
        ("  exposed comm TP/CP/PP/DP", " / ".join(f"{x:.3f} s" for x in (
            est.tp_comm_s, est.cp_comm_s, est.pp_comm_s, est.dp_comm_s))),
    ]
    d = est.detail
    if d is not None:
        rows.append(("  GEMM / attention / memory-bound / recompute / optimizer", " / ".join(
            f"{x:.3f} s" for x in (d.gemm_s, d.attention_s, d.memory_bound_s, d.recompute_s, d.optimizer_s))))
        for c in d.collectives:
            rows.append((f"  {c.name}", f"{c.calls:,} x {c.bytes / 1e6:,.1f} MB, {c.algorithm} over {c.link} at "
                                         f"{c.bus_bandwidth_b_s / 1e9:,.0f} GB/s bus: {c.time_s:.3f} s, "
                                         f"{c.exposed_s:.3f} s exposed"))
    inputs = plan.time_inputs_dict()
    rows.append(("step-time inputs", ", ".join(f"{n} {v['value']:.4g} ({v['source']})" for n, v in inputs.items())))
    return rows


def serving_table(plan: ServingPlan) -> Table:
    r = plan.request
    title = f"serving{' ' + r.name if r.name else ''}: {r.model.title} {r.format.name} on {r.gpu.name}"
    rows = [
        ("parallelism", f"TP {plan.tp} x PP {plan.pp} = {plan.gpus_per_replica} GPUs per replica"),
        ("weights as stored", f"{_gb(plan.weights_bytes)} total, {_gb(plan.weights_per_gpu_bytes)} per GPU"),
        (f"  nominal ({r.format.weight_bits} bits x params)", _gb(plan.nominal_weights_bytes)),
        *([("  GEMMs", "on a 16-bit copy dequantized per call (batch > 1); batch 1: 4-bit GEMV")]
          if r.format.dequantizes_per_matmul else []),
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
    if plan.latency is not None:
        lat = plan.latency
        rows.append((f"TTFT ({lat.prompt_len:,}-token prompt)",
                     f"{lat.ttft_s * 1e3:,.1f} ms ({lat.prefill_bound}-bound, one request alone)"))
        rows.append(("per-user speed", f"{lat.per_user_tokens_per_s:,.0f} tokens/s alone"
                                       + "".join(f", {p.per_user_tokens_per_s:,.0f} at batch {p.batch}"
                                                 for p in plan.roofline[-1:])))
        if lat.request_s is not None:
            rows.append((f"request of {lat.output_len:,} tokens", f"{lat.request_s:,.2f} s alone"))
    rows.append(("replicas", f"{plan.replicas} ({plan.gpus} GPUs, {plan.nodes} nodes)"))
    for w in plan.warnings:
        rows.append(("warning", w))
    return _kv_table(title, rows)


def reliability_table(plan: ReliabilityPlan, title: str = "reliability") -> Table:
    rate = plan.interruptions_per_gpu_year
    extra: list[tuple[str, str]] = []
    if rate is not None:
        extra = [
            ("  hardware only", f"{plan.hardware_mtbf_s / 3600:,.1f} h (AFR {plan.annual_failure_rate:.0%} per GPU-year)"),
            ("planned stops", f"{plan.planned_per_day:.2f}/day ({plan.planned_per_gpu_year:.3f} per GPU-year)"),
        ]
    return _kv_table(title, [
        ("MTBF", f"{plan.mtbf_s / 3600:,.1f} h ({plan.failures_per_day:.2f} interruptions/day, "
                 + (f"{rate:.3f} per GPU-year, all causes)" if rate is not None
                    else f"AFR {plan.annual_failure_rate:.0%})")),
        *extra,
        ("checkpoint", f"{_gb(plan.checkpoint_bytes)}, {plan.checkpoint_write_s:,.1f} s at "
                       f"{plan.storage_bandwidth_b_s / GB:,.0f} GB/s"),
        ("interval (Daly)", f"{plan.interval_s / 60:,.1f} min (Young {plan.young_interval_s / 60:,.1f} min)"),
        ("goodput", f"{plan.goodput:.1%} (requeue {plan.requeue_s / 60:.0f} min + restart {plan.restart_s / 60:.0f} min)"),
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
        ("nameplate (max) IT power", "-" if plan.nameplate_it_power_w is None else
         f"{plan.nameplate_it_power_w / 1e3:,.0f} kW"
         + ("" if plan.nameplate_fits is None else f" ({'within' if plan.nameplate_fits else 'OVER'} budget)")),
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
NormOpt = Annotated[str | None, typer.Option("--norm", help="custom model: rmsnorm|layernorm")]
MlpOpt = Annotated[str | None, typer.Option("--mlp", help="custom model: swiglu|gelu")]
LinearBiasOpt = Annotated[bool | None, typer.Option("--linear-bias/--no-linear-bias", help="custom model: biases")]
TiedOpt = Annotated[bool | None, typer.Option("--tied-embeddings/--untied-embeddings", help="custom model")]
PositionsOpt = Annotated[int | None, typer.Option("--learned-positions", help="custom model: learned positions")]
RopeThetaOpt = Annotated[int | None, typer.Option("--rope-theta", help="custom model: RoPE base")]


def _style(norm: str | None, mlp: str | None, linear_bias: bool | None, tied: bool | None, positions: int | None,
           rope_theta: int | None) -> dict[str, Any]:
    if norm is not None and norm not in ("rmsnorm", "layernorm"):
        raise _Usage(f"--norm: expected rmsnorm or layernorm, got '{norm}'")
    if mlp is not None and mlp not in ("swiglu", "gelu"):
        raise _Usage(f"--mlp: expected swiglu or gelu, got '{mlp}'")
    return {"norm": norm, "mlp": mlp, "linear_bias": linear_bias, "tied_embeddings": tied,
            "learned_positions": positions, "rope_theta": rope_theta}


@size_app.command("serve")
def size_serve(
    model_name: Annotated[str | None, typer.Option("--model", "-m", help="catalog model, e.g. llama3-70b")] = None,
    gpu_name: Annotated[str, typer.Option("--gpu", help="GPU model, e.g. h100-80gb")] = "h100-80gb",
    quant: Annotated[str | None, typer.Option("--quant", help="none|fp8|int8|awq-int4|gptq-int4|nf4")] = None,
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
    prompt_len: Annotated[int | None, typer.Option("--prompt-len", help="TTFT prompt (default: --context-len)")] = None,
    output_len: Annotated[int | None, typer.Option("--output-len", help="tokens per request (latency)")] = None,
    kv_cache_bytes: Annotated[str | None, typer.Option(
        "--kv-cache-memory-bytes", help="KV cache per GPU, e.g. 20GiB (vLLM's flag)")] = None,
    num_gpu_blocks: Annotated[int | None, typer.Option(
        "--num-gpu-blocks-override", help="KV blocks per GPU (vLLM's flag)")] = None,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node")] = 8,
    layers: LayersOpt = None,
    hidden: HiddenOpt = None,
    ffn: FfnOpt = None,
    heads: HeadsOpt = None,
    kv_heads: KvHeadsOpt = None,
    vocab: VocabOpt = None,
    experts: ExpertsOpt = 1,
    experts_per_token: ExpertsPerTokenOpt = 1,
    norm: NormOpt = None,
    mlp: MlpOpt = None,
    linear_bias: LinearBiasOpt = None,
    tied_embeddings: TiedOpt = None,
    learned_positions: PositionsOpt = None,
    rope_theta: RopeThetaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Weights, KV cache, blocks, TP/PP, decode roofline, speculation and replicas of a deployment.

    Unset flags take the defaults of a blueprint's serving: entry; the request is planned exactly
    as the blueprint's would be.
    \f
    The request is built by :func:`aiinfra.plan.serving.serving_request_from_deployment`."""

    def body() -> None:
        arch = _architecture(model_name, layers, hidden, ffn, heads, kv_heads, vocab, experts, experts_per_token,
                             _style(norm, mlp, linear_bias, tied_embeddings, learned_positions, rope_theta))
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
        try:
            kv_bytes = None if kv_cache_bytes is None else float(parse_bytes(kv_cache_bytes))
        except ValueError as exc:
            raise _Usage(f"--kv-cache-memory-bytes: {exc}") from None
        req = replace(serving_request_from_deployment(dep, gpu_name, gpus_per_node, custom),
                      name="", avg_context_len=context, prompt_len=prompt_len, output_len=output_len,
                      kv_cache_memory_bytes=kv_bytes, num_gpu_blocks_override=num_gpu_blocks)
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
    micro_batch: Annotated[str | None, typer.Option("--micro-batch", help="sequences per micro-batch or auto")] = None,
    days: Annotated[float | None, typer.Option(
        "--days", help="find the fewest nodes that train --tokens in this many days")] = None,
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
    interruptions: Annotated[float, typer.Option(
        "--interruptions-per-gpu-year", help="unexpected job interruptions, all causes (default: Llama 3's)",
    )] = DEFAULT_INTERRUPTIONS_PER_GPU_YEAR,
    planned: Annotated[float, typer.Option(
        "--planned-per-gpu-year", help="planned stops (maintenance) (default: Llama 3's)")] = DEFAULT_PLANNED_PER_GPU_YEAR,
    requeue_min: Annotated[float, typer.Option("--requeue-minutes", help="failure to job placed again")] = 0.0,
    restart_min: Annotated[float, typer.Option(
        "--restart-minutes", help="ranks start, checkpoint loads")] = DEFAULT_JOB_RESTART_MINUTES,
    assume: Annotated[list[str] | None, typer.Option(
        "--assume", help="set one step-time input, NAME=VALUE (repeatable; names in docs/planner.md)")] = None,
    offload_optimizer: Annotated[str | None, typer.Option(
        "--offload-optimizer", help="DeepSpeed: none|cpu|nvme (ZeRO stage 1+)")] = None,
    offload_param: Annotated[str | None, typer.Option(
        "--offload-param", help="DeepSpeed: none|cpu|nvme (ZeRO stage 3, with the optimizer's)")] = None,
    finetune: Annotated[str, typer.Option("--finetune", help="full|lora|qlora")] = "full",
    lora_rank: Annotated[int, typer.Option("--lora-rank", help="LoRA/QLoRA adapter rank")] = 16,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adam|adam-8bit")] = "adam",
    master_weights: Annotated[bool, typer.Option(
        "--master-weights/--no-master-weights", help="fp32 master copy of the trained weights")] = True,
    layers: LayersOpt = None,
    hidden: HiddenOpt = None,
    ffn: FfnOpt = None,
    heads: HeadsOpt = None,
    kv_heads: KvHeadsOpt = None,
    vocab: VocabOpt = None,
    experts: ExpertsOpt = 1,
    experts_per_token: ExpertsPerTokenOpt = 1,
    norm: NormOpt = None,
    mlp: MlpOpt = None,
    linear_bias: LinearBiasOpt = None,
    tied_embeddings: TiedOpt = None,
    learned_positions: PositionsOpt = None,
    rope_theta: RopeThetaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Memory per GPU, parallel layout, step time, tokens/s and the token budget of a training job.

    Unset flags take the defaults of a blueprint's training: entry; the request is planned exactly
    as the blueprint's would be (the same layout search).
    \f
    The request is built by :func:`aiinfra.plan.training.training_request_from_job`."""

    def body() -> None:
        arch = _architecture(model_name, layers, hidden, ffn, heads, kv_heads, vocab, experts, experts_per_token,
                             _style(norm, mlp, linear_bias, tied_embeddings, learned_positions, rope_theta))
        layout = {k: _auto_or_int(v, k) for k, v in (("tp", tp), ("pp", pp), ("dp", dp), ("cp", cp), ("vpp", vpp))}
        mb = _auto_or_int(micro_batch, "micro-batch")
        if days is not None and (tokens is None or mb == "auto"):
            raise _Usage("--days needs --tokens (and a fixed --micro-batch)")
        n = gpus if (gpus is not None or days is None) else gpus_per_node
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
        planner_inputs = _assumptions(assume or [])
        given = _given(
            tp=layout["tp"], pp=layout["pp"], dp=layout["dp"], cp=layout["cp"], virtual_pipeline_stages=layout["vpp"],
            seq_len=seq_len, micro_batch=mb if mb != "auto" else None, global_batch=global_batch, global_batch_tokens=gbt,
            precision=precision, framework=framework, zero_stage=zero_stage, fsdp=fsdp, recompute=recompute,
            sequence_parallel=sequence_parallel, distributed_optimizer=distributed_optimizer, mfu=mfu,
            planner=planner_inputs or None,
        )
        # a blueprint job always has a token budget; without --tokens the plan has none (no time, no energy)
        job = _spec(TrainingJob, {"name": SIZE_NAME, "model": key, "node_group": SIZE_NAME, "nodes": n // per_node,
                                  "tokens": budget if budget is not None else 1.0, **given})
        req = with_overrides(
            training_request_from_job(job, gpu_name, per_node, custom),
            name="", tokens=budget, achieved_tflops=achieved, allow_tp_across_nodes=allow_tp_across_nodes,
            finetune=finetune, lora_rank=lora_rank, optimizer=optimizer, master_weights=master_weights,
        )
        if offload_optimizer is not None or offload_param is not None:
            req = with_overrides(req, offload_optimizer=offload_optimizer or "none", offload_param=offload_param or "none")
        sized = None
        if days is not None:
            sized = gpus_for_days(req, days)
            plan, n = sized.plan, sized.plan.request.gpus
        elif mb == "auto":
            plan = best_micro_batch(req)
        else:
            plan = plan_training(req)
        rel = plan_reliability(n, arch.params, bandwidth, afr, restart_min * 60, interruptions_per_gpu_year=interruptions,
                               planned_per_gpu_year=planned, requeue_s=requeue_min * 60)
        if as_json:
            extra = {} if sized is None else {"gpus_for_days": {k: v for k, v in sized.to_dict().items() if k != "plan"}}
            _emit_json({**plan.to_dict(), "reliability": rel.to_dict(), **extra})
        else:
            screen = console()
            if sized is not None:
                fewer = ("" if sized.fewer_nodes_days is None
                         else f"; the next smaller count takes {sized.fewer_nodes_days:,.1f} days")
                screen.print(f"{n:,} GPUs ({plan.nodes:,} nodes) train {plan.request.tokens:.3g} tokens in "
                             f"{(plan.training_time_s or 0) / DAY_S:,.1f} days (within {days:g}){fewer}")
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
        assume: Annotated[list[str] | None, typer.Option(
            "--assume", help="set one step-time input of every training job, NAME=VALUE (repeatable)")] = None,
    ) -> None:
        """Capacity plan of every training job and serving deployment, reliability, power and failures."""
        # load() runs the planner's preflight: errors stop here with every problem listed, and
        # warnings come back with the blueprint's `silence:` applied.
        loaded = load(stack, file)
        cluster = loaded.cluster
        result = loaded.plan
        if assume:
            result = _plan_with_time_inputs(cluster, assume)
        if as_json:
            _emit_json(result.to_dict())
        else:
            plan_cluster_tables(console(), result)
        err = console(stderr=True)
        for p in loaded.warnings:
            err.print(p.format(cluster.source), style="yellow", markup=False, highlight=False)
