"""Rendered serving objects, field by field against the planner (``aiinfra plan --json``)."""

from __future__ import annotations

import json
import math

import yaml
from serving_helpers import args_of, find, model_of
from serving_helpers import prod_objects as prod_objects_
from serving_helpers import prod_plan_json as prod_plan_json_

from aiinfra.catalog import engines as eng
from aiinfra.catalog.k8s_resources import (
    GPU_RESOURCE,
    LUSTRE_PVC,
    NODE_GROUP_LABEL,
    RDMA_SHARED_DEVICE_RESOURCE,
    SU_LABEL,
)
from conftest import ROOT, load_stack, render


def server(pod_spec: dict) -> dict:
    return next(c for c in pod_spec["containers"] if c["name"] == "server")


# ---------------------------------------------------------------- Llama 3 70B AWQ + 8B draft (prod)


def test_70b_engine_arguments_are_the_plans():
    prod_objects = prod_objects_()
    prod_plan_json = prod_plan_json_()
    plan = prod_plan_json["llama3-70b-chat"]
    dep = find(prod_objects["llama3-70b-chat"], "Deployment")
    args = args_of(server(dep["spec"]["template"]["spec"]))
    assert args["--tensor-parallel-size"] == str(plan["tp"]) == "1"
    assert args["--pipeline-parallel-size"] == str(plan["pp"]) == "1"
    assert args["--max-model-len"] == str(plan["max_model_len"]) == "8192"
    assert float(args["--gpu-memory-utilization"]) == plan["gpu_memory_utilization"] == 0.9
    assert args["--kv-cache-dtype"] == plan["kv_cache_dtype"] == "fp8"
    assert args["--dtype"] == "bfloat16" and plan["dtype"] == "bf16"
    # an AWQ checkpoint says its own quant_method: vLLM picks awq_marlin itself, no flag to disagree
    assert plan["quantization"] == "awq-int4" and "--quantization" not in args
    assert args["--max-num-seqs"] == "256"
    assert "--enable-prefix-caching" in args and "--enable-chunked-prefill" in args
    assert args["--served-model-name"] == "llama-3.1-70b-instruct"
    assert model_of(server(dep["spec"]["template"]["spec"])) == "/lustre/models/meta-llama-3.1-70b-instruct-awq-int4"


def test_70b_speculative_config_is_json_in_the_0_8_form():
    prod_objects = prod_objects_()
    prod_plan_json = prod_plan_json_()
    plan = prod_plan_json["llama3-70b-chat"]
    args = args_of(server(find(prod_objects["llama3-70b-chat"], "Deployment")["spec"]["template"]["spec"]))
    config = json.loads(args["--speculative-config"])
    assert config == {"model": "/lustre/models/meta-llama-3.1-8b-instruct",
                      "num_speculative_tokens": plan["speculative"]["num_speculative_tokens"]}
    assert "--speculative-model" not in args  # removed in vLLM 0.8.3; prod pins 0.8.5


def test_70b_replicas_and_gpus_follow_the_plan():
    prod_objects = prod_objects_()
    prod_plan_json = prod_plan_json_()
    plan = prod_plan_json["llama3-70b-chat"]
    objs = prod_objects["llama3-70b-chat"]
    dep = find(objs, "Deployment")
    assert dep["spec"]["replicas"] == plan["replicas"] == 50
    res = server(dep["spec"]["template"]["spec"])["resources"]
    assert res["limits"][GPU_RESOURCE] == res["requests"][GPU_RESOURCE] == plan["gpus_per_replica"]
    assert RDMA_SHARED_DEVICE_RESOURCE not in res["limits"]  # one node per replica: no RDMA needed
    scaled = find(objs, "ScaledObject")["spec"]
    assert scaled["minReplicaCount"] == plan["replicas"] and scaled["maxReplicaCount"] == 200
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama3-70b-chat"}


def test_70b_header_carries_memory_and_concurrency_of_the_plan():
    prod_plan_json = prod_plan_json_()
    plan = prod_plan_json["llama3-70b-chat"]
    text = (ROOT / "manifests/prod/k8s/serving/llama3-70b-chat/deployment.yaml").read_text()
    assert f"{plan['weights_per_gpu_bytes'] / 1e9:.1f} GB weights" in text
    assert f"{plan['kv_cache_per_gpu_bytes'] / 2**30:.1f} GiB KV cache" in text
    assert f"{plan['max_concurrent_sequences']} sequences of 8192 tokens" in text


def test_startup_probe_is_sized_from_the_weights():
    prod_objects = prod_objects_()
    prod_plan_json = prod_plan_json_()
    plan = prod_plan_json["llama3-70b-chat"]
    probe = server(find(prod_objects["llama3-70b-chat"], "Deployment")["spec"]["template"]["spec"])["startupProbe"]
    draft = 16_060_522_496  # Llama 3 8B bf16 (planner: draft_weights_per_gpu_bytes at TP 1)
    assert plan["draft_weights_per_gpu_bytes"] == draft
    budget = (plan["weights_bytes"] + draft) / eng.LUSTRE_LOAD_B_S + eng.ENGINE_WARMUP_S
    assert probe["httpGet"]["path"] == "/health"
    assert probe["periodSeconds"] * probe["failureThreshold"] >= budget * eng.STARTUP_SAFETY
    assert probe["failureThreshold"] == math.ceil(math.ceil(budget * eng.STARTUP_SAFETY) / probe["periodSeconds"])


def test_probes_and_volumes_of_a_vllm_pod():
    prod_objects = prod_objects_()
    pod = find(prod_objects["llama3-70b-chat"], "Deployment")["spec"]["template"]["spec"]
    c = server(pod)
    assert c["readinessProbe"]["httpGet"]["path"] == c["livenessProbe"]["httpGet"]["path"] == "/health"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["lustre"]["persistentVolumeClaim"] == {"claimName": LUSTRE_PVC, "readOnly": True}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["lustre"]["readOnly"] is True and mounts["dshm"]["mountPath"] == "/dev/shm"
    assert pod["nodeSelector"] == {NODE_GROUP_LABEL: "gpu-serve"}


def test_alerts_use_the_metric_names_of_the_pinned_vllm():
    prod_objects = prod_objects_()
    rules = find(prod_objects["llama3-70b-chat"], "PrometheusRule")["spec"]["groups"][0]["rules"]
    kv, ttft = rules
    assert kv["expr"].startswith("max(vllm:gpu_cache_usage_perc{") and kv["expr"].endswith("> 0.95")  # 0.8.5
    assert kv["for"] == ttft["for"] == "10m"
    assert "vllm:time_to_first_token_seconds_bucket" in ttft["expr"] and ttft["expr"].endswith("> 2")
    rules405 = find(prod_objects["llama3-405b"], "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert rules405[0]["expr"].startswith("max(vllm:kv_cache_usage_perc{")  # 0.12.0
    assert rules405[1]["expr"].endswith("> 4")
    triggers = find(prod_objects["llama3-70b-chat"], "ScaledObject")["spec"]["triggers"]
    assert [t["metadata"]["query"].split("{")[0] for t in triggers] == [
        "sum(vllm:num_requests_waiting", "avg(vllm:gpu_cache_usage_perc"]
    assert [t["metadata"]["threshold"] for t in triggers] == ["8", "0.8"]


# ---------------------------------------------------------------- Llama 3.1 405B FP8: LeaderWorkerSet


def test_405b_is_a_leaderworkerset_of_two_whole_nodes():
    prod_objects = prod_objects_()
    prod_plan_json = prod_plan_json_()
    plan = prod_plan_json["llama3-405b"]
    lws = find(prod_objects["llama3-405b"], "LeaderWorkerSet")
    tpl = lws["spec"]["leaderWorkerTemplate"]
    assert plan["tp"] == 8 and plan["pp"] == 2 and plan["nodes"] == 2
    assert tpl["size"] == plan["nodes"] and lws["spec"]["replicas"] == plan["replicas"] == 1
    assert tpl["restartPolicy"] == "RecreateGroupOnPodRestart"
    for role in ("leaderTemplate", "workerTemplate"):
        pod = tpl[role]["spec"]
        res = server(pod)["resources"]
        assert res["limits"][GPU_RESOURCE] == res["requests"][GPU_RESOURCE] == 8  # a whole node
        assert res["limits"][RDMA_SHARED_DEVICE_RESOURCE] == 1
        assert pod["nodeSelector"] == {NODE_GROUP_LABEL: "gpu-serve", SU_LABEL: "su16"}  # gpu[481-512]


def test_405b_leader_serves_and_the_worker_joins_without_ray():
    prod_objects = prod_objects_()
    tpl = find(prod_objects["llama3-405b"], "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    leader, worker = server(tpl["leaderTemplate"]["spec"]), server(tpl["workerTemplate"]["spec"])
    la, wa = args_of(leader), args_of(worker)
    for a in (la, wa):
        assert a["--tensor-parallel-size"] == "8" and a["--pipeline-parallel-size"] == "2"
        assert a["--distributed-executor-backend"] == "mp" and a["--nnodes"] == "2"
        assert a["--master-addr"] == "$(LWS_LEADER_ADDRESS)"
        assert "--quantization" not in a  # the FP8 checkpoint's config says fbgemm_fp8
    assert leader["command"] == worker["command"] == ["vllm", "serve"]  # only `vllm serve` runs --headless
    assert model_of(leader) == model_of(worker) == "/lustre/models/meta-llama-3.1-405b-instruct-fp8"
    assert la["--node-rank"] == "0" and "--headless" not in la
    assert wa["--node-rank"] == "$(LWS_WORKER_INDEX)" and "--headless" in wa
    assert "startupProbe" in leader and "ports" in leader
    assert "startupProbe" not in worker  # a headless worker serves no HTTP
    assert not any("ray" in t for t in leader["command"] + leader.get("args", []) if t != "mp")
    svc = find(prod_objects["llama3-405b"], "Service")
    assert svc["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"


def test_405b_stages_weights_on_local_nvme_with_a_checksum():
    from serving_helpers import load_variant, serving_objects, stack_data

    data = stack_data("prod")
    dep = next(d for d in data["serving"] if d["name"] == "llama3-405b")
    dep["weights_source"] = "local-nvme"
    dep["weights_manifest_sha256"] = "5f" * 32  # any well-formed digest of a SHA256SUMS file
    prod_objects = serving_objects(load_variant(data))
    pod = find(prod_objects["llama3-405b"], "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    init = next(c for c in pod["initContainers"] if c["name"] == "stage-weights")
    script = init["command"][-1]
    assert "cp -a /lustre/models/meta-llama-3.1-405b-instruct-fp8/. /models/target/" in script
    assert "/models/target/SHA256SUMS\" | sha256sum -c -" in script and "sha256sum --quiet -c SHA256SUMS" in script
    assert script.index("cp -a") < script.index("sha256sum")
    assert model_of(server(pod)) == "/models/target"
    staged = next(v for v in pod["volumes"] if v["name"] == "local-weights")
    assert "medium" not in staged["emptyDir"]  # node-local disk, not memory


# ---------------------------------------------------------------- TensorRT-LLM


def test_trtllm_builds_the_engine_with_the_plans_layout():
    prod_objects = prod_objects_()
    prod_plan_json = prod_plan_json_()
    plan = prod_plan_json["llama3-8b-trt"]
    objs = prod_objects["llama3-8b-trt"]
    job = find(objs, "Job")
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert f"--tp_size {plan['tp']} --pp_size {plan['pp']}" in script
    assert "--qformat fp8" in script and "--kv_cache_dtype fp8" in script
    assert "trtllm-build --checkpoint_dir /scratch/checkpoint --output_dir /lustre/engines/llama3-8b-trt/" in script
    assert "--max_seq_len 8192" in script
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert "readOnly" not in volumes["lustre-rw"]["persistentVolumeClaim"]  # the build writes the engine
    pod = find(objs, "Deployment")["spec"]["template"]["spec"]
    c = server(pod)
    assert c["command"] == ["trtllm-serve"] and c["args"][0].startswith("/lustre/engines/llama3-8b-trt/")
    a = args_of({"args": c["args"][1:]})
    assert a["--tp_size"] == "1" and a["--max_seq_len"] == "8192"
    assert 0 < float(a["--kv_cache_free_gpu_memory_fraction"]) <= 0.95
    assert [i["name"] for i in pod["initContainers"]] == ["wait-for-engine"]
    assert not any(o["kind"] in ("ServiceMonitor", "ScaledObject") for o in objs)  # no Prometheus metrics


# ---------------------------------------------------------------- dev and the tree


def test_dev_serves_llama3_8b_on_one_gpu():
    from aiinfra.render.serving import objects

    objs = objects(load_stack("dev").cluster, load_stack("dev").plan)["llama3-8b"]
    c = server(find(objs, "Deployment")["spec"]["template"]["spec"])
    assert c["resources"]["limits"][GPU_RESOURCE] == 1
    assert args_of(c)["--tensor-parallel-size"] == "1"


def test_kustomizations_list_every_serving_folder():
    for env in ("dev", "prod"):
        tree = ROOT / "manifests" / env / "k8s"
        root = yaml.safe_load((tree / "kustomization.yaml").read_text())
        assert "serving" in root["resources"]
        serving = yaml.safe_load((tree / "serving" / "kustomization.yaml").read_text())
        folders = sorted(p.name for p in (tree / "serving").iterdir() if p.is_dir())
        assert serving["resources"] == folders
        for folder in folders:
            k = yaml.safe_load((tree / "serving" / folder / "kustomization.yaml").read_text())
            files = sorted(p.name for p in (tree / "serving" / folder).glob("*.yaml") if p.name != "kustomization.yaml")
            assert sorted(k["resources"]) == files


def test_committed_serving_manifests_equal_a_fresh_render():

    for env in ("dev", "prod"):
        fresh = render(load_stack(env), only=["k8s-serving"])
        for path, text in fresh.items():
            assert (ROOT / "manifests" / env / path).read_text() == text, f"stale {env}/{path}: aiinfra render"
        on_disk = {str(p.relative_to(ROOT / "manifests" / env)) for p in (ROOT / "manifests" / env / "k8s" / "serving").rglob("*.yaml")}
        assert on_disk == set(fresh)
