"""Serving as the pinned engines and controllers run it (issue 14): each test names the upstream
fact it holds the rendered objects to.

- vLLM runs as ``vllm serve MODEL`` (model positional): only that entry point runs a ``--headless``
  worker (vllm/entrypoints/cli/serve.py), and 0.8.5 refuses ``--model`` after ``serve``.
- LWS (v0.10.0) creates a headless Service named after the LeaderWorkerSet: the client Service
  must have another name, and whatever selects it (ServiceMonitor, KEDA, alerts) must follow.
- vLLM refuses a ``--quantization`` that disagrees with a pre-quantized checkpoint's quant_method.
- TensorRT-LLM's quantize.py calibrates on the Hub's cnn_dailymail unless ``--calib_dataset`` names
  a local directory; the build Job is offline.
- Kueue admits only workloads that name a LocalQueue (``kueue.x-k8s.io/queue-name``).
- Argo CD's self-heal resets an autoscaled ``/spec/replicas`` unless ignoreDifferences is honoured
  in the sync too (``RespectIgnoreDifferences=true``).
"""

from __future__ import annotations

import re
import shlex
from functools import cache

import pytest
import yaml
from serving_helpers import (
    args_of,
    find,
    load_variant,
    model_of,
    problems_of,
    prod_objects,
    serving_objects,
    stack_data,
    warm_crd_index,
)

from aiinfra.catalog import engines as eng
from aiinfra.plan.fabric_env import nccl_env
from conftest import load_stack, render

WORKLOAD_KINDS = ("Deployment", "LeaderWorkerSet", "Job")
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"  # Kueue's documented label (site/content/en/docs/tasks/run/*.md)


def pod_templates(obj: dict) -> dict[str, dict]:
    if obj["kind"] == "LeaderWorkerSet":
        tpl = obj["spec"]["leaderWorkerTemplate"]
        return {"leader": tpl["leaderTemplate"], "worker": tpl["workerTemplate"]}
    return {"pod": obj["spec"]["template"]}


def server(template: dict) -> dict:
    return next(c for c in template["spec"]["containers"] if c["name"] in ("server", "build"))


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def errors_at(data: dict) -> dict[str, str]:
    """``serving[i].key`` -> id of every error of a modified prod blueprint."""
    return {p.key_path.removeprefix("aiinfra:cluster."): p.id for p in problems_of(data) if p.level.value == "error"}


def index_of(data: dict, name: str) -> int:
    return next(i for i, d in enumerate(data["serving"]) if d["name"] == name)


@cache
def prod_render() -> dict[str, str]:
    return render(load_stack("prod"))


# ---------------------------------------------------------------- 1. vllm serve MODEL


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_vllm_server_is_vllm_serve_with_the_model_positional(env):
    built = load_stack(env)
    planned = {d["name"]: d for d in built.plan.to_dict()["deployments"]}
    seen = 0
    for name, objs in serving_objects(built).items():
        if planned[name]["engine"] != "vllm":
            continue
        work = next(o for o in objs if o["kind"] in ("Deployment", "LeaderWorkerSet"))
        for role, tpl in pod_templates(work).items():
            c = server(tpl)
            assert c["command"] == ["vllm", "serve"], f"{name} {role}: {c['command']}"
            assert model_of(c) == planned[name]["weights_dir"]
            assert "--model" not in c["args"]  # 0.8.5: "With `vllm serve`, you should provide the model as a positional argument"
            seen += 1
    assert seen


def test_headless_worker_runs_under_vllm_serve():
    tpl = find(prod_objects()["llama3-405b"], "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    worker = server(tpl["workerTemplate"])
    assert "--headless" in worker["args"] and worker["command"] == ["vllm", "serve"]
    assert args_of(worker)["--node-rank"] == "$(LWS_WORKER_INDEX)"


def test_ray_leader_execs_vllm_serve():
    data = stack_data("prod")
    data["serving"][index_of(data, "llama3-405b")].update({"distributed_backend": "ray", "image": "vllm"})
    lws = find(serving_objects(load_variant(data))["llama3-405b"], "LeaderWorkerSet")
    script = server(lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"])["command"][2]
    words = shlex.split(next(ln for ln in script.splitlines() if ln.startswith("exec ")))
    assert words[1:3] == ["vllm", "serve"] and words[3] == "/lustre/models/meta-llama-3.1-405b-instruct-fp8"


# ---------------------------------------------------------------- 2. the client Service is not the LWS's


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_client_service_is_not_a_service_lws_creates_and_its_selectors_follow(env):
    for name, objs in serving_objects(load_stack(env)).items():
        (svc,) = by_kind(objs, "Service")
        svc_name = svc["metadata"]["name"]
        for work in (o for o in objs if o["kind"] in ("Deployment", "LeaderWorkerSet")):
            # LWS: the shared headless Service is <lws name>; UniquePerReplica adds <lws name>-<index>
            assert not re.fullmatch(rf"{re.escape(work['metadata']['name'])}(-\d+)?", svc_name), name
        for monitor in by_kind(objs, "ServiceMonitor"):
            labels = svc["metadata"]["labels"]
            assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
        queries = [t["metadata"]["query"] for so in by_kind(objs, "ScaledObject") for t in so["spec"]["triggers"]]
        queries += [r["expr"] for pr in by_kind(objs, "PrometheusRule") for g in pr["spec"]["groups"]
                    for r in g["rules"]]
        for q in queries:  # Prometheus Operator's target label `service` is the scraped Service's name
            assert re.findall(r'service="([^"]+)"', q) == [svc_name], q


def test_pulumi_service_url_names_the_client_service():
    pytest.importorskip("pulumi")
    from aiinfra.deploy.serving_component import VllmDeploymentArgs, _service_url

    objs = prod_objects()["llama3-405b"]
    (svc,) = by_kind(objs, "Service")
    url = _service_url(VllmDeploymentArgs("llama3-405b", "aiinfra-serving", "vllm", objs))
    assert url.startswith(f"http://{svc['metadata']['name']}.") and svc["metadata"]["name"] != "llama3-405b"


# ---------------------------------------------------------------- 3. no --quantization for a pre-quantized checkpoint


def test_prequantized_checkpoints_get_no_quantization_flag():
    built = load_stack("prod")
    bp = {d.name: d for d in built.cluster.blueprint.serving}
    planned = {d["name"]: d for d in built.plan.to_dict()["deployments"]}
    seen = 0
    for name, objs in prod_objects().items():
        if bp[name].engine != "vllm":
            continue
        # prod: an AWQ checkpoint (awq-int4 only comes pre-quantized) and Meta's FP8 release (fbgemm_fp8)
        assert bp[name].quantization in ("awq-int4", "fp8")
        assert "--quantization" not in planned[name]["args"], name
        work = next(o for o in objs if o["kind"] in ("Deployment", "LeaderWorkerSet"))
        for tpl in pod_templates(work).values():
            assert "--quantization" not in server(tpl)["args"], name
            seen += 1
    assert seen == 3  # the 70B's pod, the 405B's leader and worker


def test_a_16bit_checkpoint_is_quantized_to_fp8_while_loading():
    data = stack_data("prod")
    del data["serving"][index_of(data, "llama3-405b")]["checkpoint_quantization"]
    objs = serving_objects(load_variant(data))["llama3-405b"]
    leader = find(objs, "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
    assert args_of(server(leader))["--quantization"] == "fp8"


@pytest.mark.parametrize(("change", "key"), [
    ({"quantization": "awq-int4"}, "quantization"),  # fbgemm_fp8 stores FP8, not AWQ
    ({"quantization": "none"}, "quantization"),  # the plan would size 16-bit weights
    ({"checkpoint_quantization": "fp9"}, "checkpoint_quantization"),
])
def test_a_quantization_that_disagrees_with_the_checkpoint_is_refused(change, key):
    data = stack_data("prod")
    i = index_of(data, "llama3-405b")
    data["serving"][i].update(change)
    assert errors_at(data).get(f"serving[{i}].{key}") == "serving-checkpoint-quantization"


def test_tensorrt_llm_builds_from_a_16bit_checkpoint_only():
    data = stack_data("prod")
    i = index_of(data, "llama3-8b-trt")
    data["serving"][i]["checkpoint_quantization"] = "fp8"
    assert errors_at(data).get(f"serving[{i}].checkpoint_quantization") == "serving-checkpoint-quantization"


# ---------------------------------------------------------------- 4. TensorRT-LLM calibrates on local data


def build_words() -> list[str]:
    job = find(prod_objects()["llama3-8b-trt"], "Job")
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][2]
    return shlex.split(next(ln for ln in script.splitlines() if "quantize.py" in ln))


def test_engine_build_calibrates_on_the_blueprints_dataset_on_lustre():
    words = build_words()
    dep = next(d for d in load_stack("prod").cluster.blueprint.serving if d.name == "llama3-8b-trt")
    assert dep.calibration_dataset and words[words.index("--calib_dataset") + 1] == dep.calibration_dataset
    job = find(prod_objects()["llama3-8b-trt"], "Job")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"  # why the Hub default could not work
    mounts = [m["mountPath"] for m in job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]]
    assert any(dep.calibration_dataset.startswith(m + "/") for m in mounts)


@pytest.mark.parametrize(("value", "present"), [(None, False), ("/data/calibration", True)])
def test_missing_or_unmounted_calibration_data_is_refused(value, present):
    data = stack_data("prod")
    i = index_of(data, "llama3-8b-trt")
    if present:
        data["serving"][i]["calibration_dataset"] = value
    else:
        del data["serving"][i]["calibration_dataset"]
    assert errors_at(data).get(f"serving[{i}].calibration_dataset") == "serving-calibration"


def test_a_16bit_engine_needs_no_calibration():
    data = stack_data("prod")
    i = index_of(data, "llama3-8b-trt")
    data["serving"][i].update({"quantization": "none", "kv_cache_dtype": "auto"})
    del data["serving"][i]["calibration_dataset"]
    assert f"serving[{i}].calibration_dataset" not in errors_at(data)
    job = find(serving_objects(load_variant(data))["llama3-8b-trt"], "Job")
    assert "--calib_dataset" not in job["spec"]["template"]["spec"]["containers"][0]["command"][2]


def test_the_calibration_data_is_part_of_the_engines_identity():
    data = stack_data("prod")
    data["serving"][index_of(data, "llama3-8b-trt")]["calibration_dataset"] = "/lustre/datasets/other"
    other = find(serving_objects(load_variant(data))["llama3-8b-trt"], "Deployment")
    engine_dir = server(other["spec"]["template"])["args"][0]  # trtllm-serve <engine dir>
    assert engine_dir != find(prod_objects()["llama3-8b-trt"], "Deployment")["spec"]["template"]["spec"][
        "containers"][0]["args"][0]


# ---------------------------------------------------------------- 5. serving workloads in their Kueue queue


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_serving_workloads_name_the_local_queue_kueue_renders_for_their_namespace(env):
    rendered = render(load_stack(env), only=["k8s-platform"])
    queues = [o for o in yaml.safe_load_all(rendered["k8s/kueue/queues.yaml"]) if o]
    local = {(q["metadata"]["namespace"], q["metadata"]["name"]): q for q in queues if q["kind"] == "LocalQueue"}
    cluster_queues = {q["metadata"]["name"]: q for q in queues if q["kind"] == "ClusterQueue"}
    seen = 0
    for objs in serving_objects(load_stack(env)).values():
        for work in (o for o in objs if o["kind"] in WORKLOAD_KINDS):
            ns = work["metadata"]["namespace"]
            lq = local.get((ns, work["metadata"]["labels"].get(QUEUE_LABEL)))
            assert lq is not None, f"{work['kind']} {work['metadata']['name']}: no LocalQueue of {ns} named"
            cq = cluster_queues[lq["spec"]["clusterQueue"]]
            assert cq["spec"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == ns
            seen += 1
    assert seen


# ---------------------------------------------------------------- 6. Argo CD leaves autoscaled replicas alone


def test_argo_cd_ignores_the_replicas_of_every_autoscaled_workload():
    rendered = prod_render()
    app = yaml.safe_load(rendered["gitops/serving.yaml"])
    scalers = [o for p, t in rendered.items() if p.startswith("k8s/serving/") for o in yaml.safe_load_all(t)
               if o and o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]
    assert scalers
    ignored = {(d.get("group", ""), d["kind"], d.get("namespace"), d["name"]): d["jsonPointers"]
               for d in app["spec"].get("ignoreDifferences", [])}
    for so in scalers:
        ref = so["spec"]["scaleTargetRef"]
        group = ref["apiVersion"].rpartition("/")[0]
        assert ignored.get((group, ref["kind"], so["metadata"]["namespace"], ref["name"])) == ["/spec/replicas"]
        target = next(o for p, t in rendered.items() if p.startswith("k8s/serving/") for o in yaml.safe_load_all(t)
                      if o and o["kind"] == ref["kind"] and o["metadata"]["name"] == ref["name"])
        assert "replicas" in target["spec"]  # what self-heal would otherwise put back
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert app["spec"]["syncPolicy"]["automated"]["selfHeal"] is True


def test_an_hpa_scaled_leaderworkerset_is_ignored_too_and_the_application_is_valid():
    pytest.importorskip("kubernetes_validate")
    from k8s_schema import require_crds, validate_object

    require_crds()
    warm_crd_index()
    data = stack_data("prod")
    data["serving"][index_of(data, "llama3-405b")].update({"autoscaling": "hpa", "max_replicas": 2})
    built = load_variant(data)
    app = yaml.safe_load(render(built)["gitops/serving.yaml"])
    kinds = {(d["group"], d["kind"], d["name"]) for d in app["spec"]["ignoreDifferences"]}
    assert ("leaderworkerset.x-k8s.io", "LeaderWorkerSet", "llama3-405b") in kinds
    assert ("apps", "Deployment", "llama3-70b-chat") in kinds
    assert not validate_object(app, data["versions"]["kubernetes"])


def test_no_ignore_differences_without_an_autoscaler():
    app = yaml.safe_load(render(load_stack("dev"))["gitops/serving.yaml"])
    assert not any(o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
                   for objs in serving_objects(load_stack("dev")).values() for o in objs)
    assert "ignoreDifferences" not in app["spec"]
    assert "RespectIgnoreDifferences=true" not in app["spec"]["syncPolicy"]["syncOptions"]


# ---------------------------------------------------------------- 7. NCCL over the rails; TensorRT-LLM authenticated


def test_multi_node_pods_carry_the_shared_fabric_environment():
    built = load_stack("prod")
    group = built.cluster.groups["gpu-serve"]
    want = nccl_env(built.cluster, group, in_pod=True)
    assert "NCCL_IB_HCA" in want
    lws = find(prod_objects()["llama3-405b"], "LeaderWorkerSet")
    for tpl in pod_templates(lws).values():
        env = {e["name"]: e.get("value") for e in server(tpl)["env"]}
        assert {k: env.get(k) for k in want} == want


def test_tensorrt_llm_open_to_the_gateway_needs_its_authentication():
    assert eng.TENSORRT_LLM.api_key_env is None  # trtllm-serve takes no API key
    built = load_stack("prod")
    dep = next(d for d in built.cluster.blueprint.serving if d.engine == "tensorrt-llm")
    assert dep.gateway_namespace and dep.gateway_auth
    assert "serving-no-auth" not in {p.id for p in built.warnings}
    data = stack_data("prod")
    i = index_of(data, dep.name)
    data["serving"][i]["gateway_auth"] = False
    found = {p.key_path.removeprefix("aiinfra:cluster."): p.id for p in problems_of(data)}
    assert found[f"serving[{i}].gateway_namespace"] == "serving-no-auth"


# ---------------------------------------------------------------- all of it, against the schemas


def test_fresh_serving_objects_and_their_application_are_schema_valid():
    pytest.importorskip("kubernetes_validate")
    from k8s_schema import require_crds, validate_object

    require_crds()
    warm_crd_index()
    version = load_stack("prod").cluster.blueprint.versions.kubernetes
    objs = [o for objs in prod_objects().values() for o in objs]
    objs.append(yaml.safe_load(prod_render()["gitops/serving.yaml"]))
    problems = [p for o in objs for p in validate_object(o, version)]
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize(("name", "other"), [("a" * 60, None), ("chat", "chat-api")])
def test_a_client_service_name_that_cannot_exist_is_refused(name, other):
    data = stack_data("prod")
    data["serving"][0]["name"] = name
    if other:
        data["serving"][1]["name"] = other  # an LWS: its headless Service is 'chat-api'
    assert errors_at(data).get("serving[0].name") == "serving-name"
