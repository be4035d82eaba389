"""Serving preflight beyond the planner's arithmetic (``cluster`` phase): the pinned engine version
has every flag a deployment needs, multi-node replicas take whole nodes inside one SU, the
checkpoint can be read (and staged) and its own quantization agrees with the blueprint's, a
TensorRT-LLM build has local calibration data, all replicas fit their node group, the API is not
open without a key (or the gateway's authentication) nor its egress open to anywhere, and planned
speculative decoding pays for its draft model. It reads the
deployments as the plan resolved them (:mod:`aiinfra.plan.deployments`), so what is checked is
exactly what is rendered."""

from __future__ import annotations

import ipaddress

from aiinfra.catalog import engines as eng
from aiinfra.checks.registry import validator, warning
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.deployments import (
    STAGING_HEADROOM,
    ResolvedDeployment,
    trtllm_serve_args,
    vllm_args,
    vllm_worker_args,
)
from aiinfra.plan.serving import speculative_speedup
from aiinfra.spec.cluster import Cluster
from aiinfra.spec.models import ServingDeployment

SERVING_ERRORS = {"serving-engine-version", "serving-engine-flag", "serving-layout", "serving-weights",
                  "serving-over-capacity", "serving-autoscaling", "serving-api-key-unsupported",
                  "serving-checkpoint-quantization", "serving-calibration", "serving-name"}
#: Longest Service name (an RFC 1035 label, which Kubernetes requires of Service names).
SERVICE_NAME_MAX = 63
#: An egress CIDR this wide (a /8 is 16.7 M addresses; /0 is every address) lets the server send to
#: practically anywhere: ``serving-egress-anywhere``.
EGRESS_ANYWHERE_PREFIX = 8
#: Planned speculative decoding below this decode speed-up (the planner's, at batch 1, where it pays
#: most) does not pay for its draft: the draft's weights and KV cache take memory from the batch, and
#: a gain this small is within the error of the planner's roofline: ``serving-speculation-no-gain``.
MIN_SPECULATION_SPEEDUP = 1.1
#: Draft lengths the hint of ``serving-speculation-no-gain`` tries.
DRAFT_LENGTHS = range(1, 11)
#: Why TensorRT-LLM serves no blueprint quantization outside ``eng.TRTLLM_QFORMAT``.
TRTLLM_UNSERVED = {
    "gptq-int4": "GPTQ checkpoints need a separate conversion path that aiinfra does not render",
    "nf4": "bitsandbytes NF4 is none of quantize.py's --qformat choices (the flag table of the pinned release)",
}



def _err(s: ResolvedDeployment, key: tuple, id: str, message: str, hint: str = "") -> Problem:
    return Problem(s.path + key, id, message, hint=hint)


@validator("cluster")
def check_serving(cluster: Cluster, plan: ClusterPlan) -> list[Problem]:
    """Problems a planned deployment still has: engine version and flags, multi-node layout,
    weights, node-group capacity, autoscaling."""
    specs = list(plan.deployments)
    problems: list[Problem] = []
    for s in specs:
        problems += _check_engine(cluster, s)
        problems += _check_layout(s)
        problems += _check_weights(cluster, s)
        problems += _check_checkpoint_quantization(s)
        problems += _check_calibration(s, cluster.blueprint.storage.parallel_title)
        problems += _check_autoscaling(s)
        problems += _check_exposure(s)
        problems += _check_speculation(s)
    problems += _check_capacity(cluster, specs)
    problems += _check_service_names(specs)
    return problems


def _check_engine(cluster: Cluster, s: ResolvedDeployment) -> list[Problem]:
    e, d = s.engine, s.dep
    if not s.image:
        if d.image is not None:
            return []  # undefined-image is reported by the blueprint checks
        return [_err(s, ("engine",), "serving-engine-version",
                     f"no {e.title} image is pinned: versions.images has no '{s.image_key}' key",
                     f"add versions.images.{s.image_key}: <repository>:<version tag>, or set image:")]
    if s.version is None or not e.knows(s.version):
        known = f"{e.oldest} to {e.newest_minor}.x"
        what = "has no version tag" if s.version is None else f"is {e.title} {eng.format_version(s.version)}"
        return [_err(s, ("image",), "serving-engine-version",
                     f"image {s.image} {what}; the flag table of aiinfra.catalog.engines knows {known}",
                     f"pin a tagged {e.title} image in {known}, or add the version's flags to the catalog")]
    out = []
    version = s.version
    args = vllm_args(s) + (vllm_worker_args(s) if s.multi_node and d.distributed_backend == "mp" else []) \
        if e.name == "vllm" else trtllm_serve_args(s)
    lacking: dict[tuple, list[tuple[str, eng.FlagSpan | None]]] = {}
    seen: set[str] = set()
    for a in args:
        for name in (a.flag, a.feature):
            if name is None or name in seen:
                continue
            seen.add(name)
            lacking.setdefault(a.key or ("image",), []).extend(eng.missing(e, version, [name]))
    for key, flags in lacking.items():
        if not flags:
            continue
        names = ", ".join(f for f, _ in flags)
        spans = "; ".join(f"{f}: {span.describe()}" if span else f"{f}: unknown to the catalog" for f, span in flags)
        what = "feature" if all(f in e.features for f, _ in flags) else "flags" if len(flags) > 1 else "flag"
        out.append(_err(s, key, "serving-engine-flag",
                        f"{e.title} {eng.format_version(version)} (image {s.image}) lacks the {what} {names} "
                        f"this deployment needs ({spans})", _flag_hint(d, flags[0][0])))
    if e.name == "tensorrt-llm" and d.quantization not in eng.TRTLLM_QFORMAT:
        why = TRTLLM_UNSERVED.get(d.quantization, "no rendered conversion makes it")
        out.append(_err(s, ("quantization",), "serving-engine-flag",
                        f"the TensorRT-LLM engine build renders quantize.py formats {sorted(eng.TRTLLM_QFORMAT)}; "
                        f"{d.quantization} is not one of them: {why}",
                        f"use engine: vllm for {d.quantization}, or quantization: awq-int4 (quantize.py --qformat "
                        "int4_awq) for 4-bit weights on TensorRT-LLM"))
    if e.name == "tensorrt-llm" and d.speculative is not None:
        out.append(_err(s, ("speculative",), "serving-engine-flag",
                        "draft-model speculation is not rendered for TensorRT-LLM (its engine needs a "
                        "draft-target build)", "remove speculative, or use engine: vllm"))
    return out


def _check_speculation(s: ResolvedDeployment) -> list[Problem]:
    """A draft model whose planned speed-up is below MIN_SPECULATION_SPEEDUP; the hint names the
    draft length that pays most with this draft (speculative_speedup, the planner's own formula)."""
    spec = s.plan.speculation
    if spec is None or spec.speedup >= MIN_SPECULATION_SPEEDUP:
        return []
    best_speedup, best = max((speculative_speedup(spec.acceptance_rate, g, spec.cost_ratio)[1], g) for g in DRAFT_LENGTHS)
    tune = (f"set speculative.num_tokens: {best} ({best_speedup:.2f}x with this draft), "
            if best_speedup >= MIN_SPECULATION_SPEEDUP and best != spec.num_tokens else "")
    return [warning(s.path + ("speculative",), "serving-speculation-no-gain",
                    f"speculative decoding with draft {spec.draft} ({spec.num_tokens} tokens, acceptance "
                    f"{spec.acceptance_rate:g}) is planned at {spec.speedup:.2f}x decode speed, below "
                    f"{MIN_SPECULATION_SPEEDUP:g}x: a draft step costs {spec.cost_ratio:.2f} of a target step",
                    f"{tune}use a smaller draft model, or remove speculative")]


def _flag_hint(d: ServingDeployment, flag: str) -> str:
    if flag in ("--nnodes", "--node-rank", "--master-addr", "--master-port", "--headless"):
        return "pin vLLM >= 0.11.1 for multi-node without Ray, or set distributed_backend: ray"
    if flag == "draft-model-speculation":
        return "pin a vLLM release before 0.11.0 (V0 engine) for a draft model, or remove speculative"
    if flag in ("--speculative-config", "--speculative-model", "--num-speculative-tokens"):
        return "pin a vLLM release that has this form of the speculative flags"
    return "pin an engine version that has it, or change the key that needs it"


def _check_layout(s: ResolvedDeployment) -> list[Problem]:
    p, d, per_node = s.plan, s.dep, s.gpus_per_node
    out = []
    if s.multi_node:
        if p.tp > per_node:
            out.append(_err(s, ("tp",), "serving-layout",
                            f"TP {p.tp} spans nodes: a tensor-parallel group must stay inside one node's "
                            f"{per_node} NVLink-connected GPUs", f"use tp <= {per_node} and pp for the rest"))
        elif p.gpus_per_replica % per_node:
            out.append(_err(s, ("pp",), "serving-layout",
                            f"TP {p.tp} x PP {p.pp} = {p.gpus_per_replica} GPUs do not fill whole nodes of "
                            f"{per_node}: a multi-node replica takes whole nodes",
                            f"make TP x PP a multiple of {per_node}"))
        if d.engine == "tensorrt-llm":
            out.append(_err(s, ("engine",), "serving-layout",
                            "multi-node TensorRT-LLM (MPI across pods) is not rendered",
                            "use engine: vllm for replicas larger than a node"))
        elif d.speculative is not None:
            out.append(_err(s, ("speculative",), "serving-layout",
                            f"vLLM's draft-model speculation does not run with pipeline parallelism (PP {p.pp})",
                            "remove speculative or fit the replica in one node"))
        fabric = s.fabric
        if fabric is not None and s.nodes_per_replica > fabric.su_nodes:
            out.append(_err(s, ("pp",), "serving-layout",
                            f"a replica of {s.nodes_per_replica} nodes does not fit in a scalable unit of "
                            f"{fabric.su_nodes} nodes: its pipeline traffic would cross the spine",
                            f"use at most {fabric.su_nodes * s.gpus_per_node} GPUs per replica"))
    elif d.speculative is not None and p.pp > 1:
        out.append(_err(s, ("speculative",), "serving-layout",
                        f"vLLM's draft-model speculation does not run with pipeline parallelism (PP {p.pp})",
                        "use pp: 1"))
    return out


def _check_weights(cluster: Cluster, s: ResolvedDeployment) -> list[Problem]:
    d = s.dep
    storage = cluster.blueprint.storage  # the chosen parallel file system: Lustre or GPFS
    fs, title = storage.parallel_fs, storage.parallel_title
    out = []
    if storage.parallel is None:
        return [_err(s, ("weights_path",), "serving-weights",
                     f"serving reads checkpoints from {title} but storage.{fs} is not declared",
                     f"declare storage.{fs}")]
    for key, path in ((("weights_path",), s.lustre_weights),
                      (("speculative", "weights_path"), s.draft_lustre_weights)):
        if path is not None and not (path + "/").startswith(s.lustre_mount + "/"):
            out.append(_err(s, key, "serving-weights",
                            f"{path} is not below the {title} mount point {s.lustre_mount}",
                            f"give a path below {s.lustre_mount}"))
    if d.weights_source == "local-nvme":
        if d.weights_manifest_sha256 is None:
            out.append(_err(s, ("weights_manifest_sha256",), "serving-weights",
                            "weights_source: local-nvme copies the checkpoint after checking it, but no "
                            "weights_manifest_sha256 is given",
                            "set it to the sha256 of the checkpoint's SHA256SUMS file"))
        nvme = s.group.node_type.local_nvme
        need = s.checkpoint_bytes * STAGING_HEADROOM
        if nvme is None:
            out.append(_err(s, ("weights_source",), "serving-weights",
                            f"node group '{s.group.name}' declares no local_nvme to stage the checkpoint on",
                            "use weights_source: lustre or declare node_types.<type>.local_nvme"))
        elif need > nvme:
            out.append(_err(s, ("weights_source",), "serving-weights",
                            f"the checkpoint needs {need / 1e9:.0f} GB of local NVMe, the node has "
                            f"{nvme / 1e9:.0f} GB", "use weights_source: lustre"))
    return out


def _check_checkpoint_quantization(s: ResolvedDeployment) -> list[Problem]:
    """A pre-quantized checkpoint's own method must store the format the blueprint plans for (vLLM takes
    the method from the checkpoint, the planner sizes the weights from ``quantization``)."""
    d, method = s.dep, s.checkpoint_quantization
    key = ("checkpoint_quantization",)
    if d.checkpoint_quantization is not None and s.engine.name == "tensorrt-llm":
        return [_err(s, key, "serving-checkpoint-quantization",
                     "the TensorRT-LLM engine build quantizes a 16-bit checkpoint (quantize.py --qformat); it does "
                     f"not start from one already quantized ({d.checkpoint_quantization})",
                     "point weights_path at the 16-bit checkpoint and remove checkpoint_quantization, or use engine: vllm")]
    if method is None:
        return []
    formats = eng.CHECKPOINT_QUANT_METHODS.get(method)
    if formats is None:
        return [_err(s, key, "serving-checkpoint-quantization",
                     f"'{method}' is not a checkpoint quant_method aiinfra knows",
                     f"give the quantization_config.quant_method of the checkpoint's config.json: one of "
                     f"{', '.join(sorted(eng.CHECKPOINT_QUANT_METHODS))}")]
    if d.quantization not in formats:
        return [_err(s, ("quantization",), "serving-checkpoint-quantization",
                     f"quantization: {d.quantization} disagrees with the checkpoint, whose quant_method {method} stores "
                     f"{' or '.join(formats)} weights: vLLM serves what the checkpoint holds, the plan would size "
                     f"{d.quantization}", f"set quantization: {formats[0]}, or point weights_path at a "
                     f"{d.quantization} checkpoint (and set checkpoint_quantization to its quant_method)")]
    if method == eng.BNB_QUANT_METHOD and s.plan.tp > 1:
        return [_err(s, ("tp",), "serving-checkpoint-quantization",
                     f"vLLM refuses a pre-quantized bitsandbytes checkpoint with tensor parallelism (TP {s.plan.tp} "
                     "planned): the checkpoint's quant states do not split across GPUs",
                     "set tp: 1 (and pp for more GPUs), or point weights_path at the 16-bit checkpoint and remove "
                     "checkpoint_quantization: vLLM then quantizes it to NF4 while loading, at any TP")]
    return []


def _check_calibration(s: ResolvedDeployment, title: str) -> list[Problem]:
    """TensorRT-LLM's engine build calibrates offline: it needs calibration data on the parallel file
    system (``title``: Lustre or GPFS)."""
    d = s.dep
    if not s.calibrates:
        return []
    if d.calibration_dataset is None:
        return [_err(s, ("calibration_dataset",), "serving-calibration",
                     f"the engine build quantizes ({d.quantization}, KV cache {d.kv_cache_dtype}) and calibrates, but no "
                     "calibration_dataset is given: quantize.py would fetch cnn_dailymail from the Hugging Face Hub, "
                     "and the Job runs offline (HF_HUB_OFFLINE=1)",
                     f"copy a Hugging Face dataset (train split, 'text' column) below {s.lustre_mount} and set "
                     "calibration_dataset to its directory")]
    if not (d.calibration_dataset + "/").startswith(s.lustre_mount + "/"):
        return [_err(s, ("calibration_dataset",), "serving-calibration",
                     f"{d.calibration_dataset} is not below the {title} mount point {s.lustre_mount}, the only "
                     "file system the build Job mounts", f"give a directory below {s.lustre_mount}")]
    return []


def _check_autoscaling(s: ResolvedDeployment) -> list[Problem]:
    d = s.dep
    out = []
    if d.autoscaling != "none" and s.engine.metrics_path is None:
        out.append(_err(s, ("autoscaling",), "serving-autoscaling",
                        f"{s.engine.title}'s server exposes no Prometheus metrics to scale on",
                        "set autoscaling: none"))
    if s.min_replicas > s.max_replicas:
        out.append(_err(s, ("max_replicas",), "serving-autoscaling",
                        f"max_replicas {s.max_replicas} is below min_replicas {s.min_replicas}",
                        f"set max_replicas >= {s.min_replicas}"))
    return out


def _check_exposure(s: ResolvedDeployment) -> list[Problem]:
    """Who may talk to the server and where it may talk to: an API key the engine cannot take, an API
    open to the gateway namespace without one, egress to (nearly) anywhere."""
    d, e = s.dep, s.engine
    out = []
    for i, cidr in enumerate(d.egress_cidrs):
        net = ipaddress.IPv4Network(cidr)
        if net.prefixlen <= EGRESS_ANYWHERE_PREFIX:
            reach = "any address" if net.prefixlen == 0 else f"{net.num_addresses:,} addresses"
            out.append(warning(s.path + ("egress_cidrs", i), "serving-egress-anywhere",
                               f"egress to {cidr} lets the server reach {reach}: a compromised server could send "
                               "what it reads (prompts, the checkpoint on Lustre) anywhere",
                               "list only the networks it must reach (a model registry, a tracing collector) "
                               "as narrow CIDRs"))
    if e.api_key_env is not None:
        return out
    serve = f"{e.title} {eng.format_version(s.version)}" if s.version else e.title
    if d.api_key_secret is not None:
        out.append(_err(s, ("api_key_secret",), "serving-api-key-unsupported",
                        f"the {serve} server has no API-key option, so the Secret "
                        f"'{d.api_key_secret}' would not be used and the API would answer without a key",
                        "remove api_key_secret and authenticate in front of the server (the gateway in "
                        "gateway_namespace), or use engine: vllm, which takes the key from the Secret"))
    elif d.gateway_namespace and not d.gateway_auth:
        out.append(warning(s.path + ("gateway_namespace",), "serving-no-auth",
                           f"the {serve} server has no API-key option: every pod in namespace "
                           f"'{d.gateway_namespace}' may call this API without credentials",
                           f"authenticate at the gateway in '{d.gateway_namespace}' and declare it with "
                           "gateway_auth: true, or use engine: vllm with api_key_secret"))
    return out


def _check_service_names(specs: list[ResolvedDeployment]) -> list[Problem]:
    """The client Service ``<name>-api`` must be a valid Service name and not a Service LWS creates for
    another deployment (a LeaderWorkerSet's headless Service has the LeaderWorkerSet's name)."""
    names = {s.name for s in specs}
    out = []
    for s in specs:
        if len(s.service_name) > SERVICE_NAME_MAX:
            out.append(_err(s, ("name",), "serving-name",
                            f"the client Service '{s.service_name}' is longer than {SERVICE_NAME_MAX} characters",
                            f"shorten the name to at most {SERVICE_NAME_MAX - len(s.service_name) + len(s.name)}"))
        elif s.service_name in names:
            out.append(_err(s, ("name",), "serving-name",
                            f"the client Service '{s.service_name}' has the name of another deployment, whose "
                            "LeaderWorkerSet or Service would take it", "rename one of the two deployments"))
    return out


def _check_capacity(cluster: Cluster, specs: list[ResolvedDeployment]) -> list[Problem]:
    """Every replica a deployment may run (its maximum) holds GPUs of its node group; together
    they must fit, so a scale-up never waits for GPUs that another model holds."""
    out = []
    by_group: dict[str, list[ResolvedDeployment]] = {}
    for s in specs:
        by_group.setdefault(s.group.name, []).append(s)
    for name, group_specs in by_group.items():
        group = group_specs[0].group
        total, first_over = 0, None
        for s in group_specs:
            total += s.gpus(s.max_replicas)
            if total > group.gpu_count and first_over is None:
                first_over = s
        if first_over is None:
            continue
        parts = ", ".join(f"{s.name} {s.max_replicas} x {s.gpus(1)}" for s in group_specs)
        s = first_over
        out.append(_err(s, ("max_replicas",) if s.dep.max_replicas else ("replicas",), "serving-over-capacity",
                        f"the deployments on node group '{name}' hold up to {total} GPUs at their maximum "
                        f"replicas ({parts}) but it has {group.gpu_count}",
                        f"free {total - group.gpu_count} GPUs (lower replicas or max_replicas) or add nodes"))
    return out


