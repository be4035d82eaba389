"""Engine facts and the serving preflight: each bad deployment fails `validate` with its key path."""

from __future__ import annotations

import re

import pytest
from serving_helpers import args_of, find, load_variant, problems_of, serving_objects, stack_data

from aiinfra.catalog import engines as eng
from aiinfra.checks.serving import SERVING_ERRORS
from conftest import ROOT


def errors(data: dict, env: str = "prod") -> dict[str, str]:
    """key path -> id of every error."""
    return {p.key_path: p.id for p in problems_of(data, env) if p.level.value == "error"}


# ---------------------------------------------------------------- the facts


@pytest.mark.parametrize(("version", "flag", "has"), [
    ("0.7.3", "--speculative-model", True),
    ("0.7.3", "--speculative-config", False),
    ("0.8.2", "--speculative-model", True),
    ("0.8.2", "--speculative-config", True),
    ("0.8.5", "--speculative-model", False),
    ("0.8.5", "--speculative-config", True),
    ("0.8.5", "--nnodes", False),
    ("0.11.0", "--nnodes", False),
    ("0.11.1", "--nnodes", True),
    ("0.12.0", "--headless", True),
    ("0.10.2", "draft-model-speculation", True),
    ("0.11.0", "draft-model-speculation", False),
])
def test_vllm_flag_table(version, flag, has):
    assert (eng.missing(eng.VLLM, eng.image_version(f"vllm/vllm-openai:v{version}"), [flag]) == []) is has


def test_kv_cache_metric_name_follows_the_version():
    assert eng.kv_cache_usage_metric((0, 8, 5)) == "vllm:gpu_cache_usage_perc"
    assert eng.kv_cache_usage_metric((0, 10, 0)) == "vllm:kv_cache_usage_perc"
    assert eng.kv_cache_usage_metric((0, 12, 0)) == "vllm:kv_cache_usage_perc"


def test_image_versions():
    assert eng.image_version("vllm/vllm-openai:v0.8.5") == (0, 8, 5)
    assert eng.image_version("nvcr.io/nvidia/tensorrt-llm/release:0.19.0") == (0, 19, 0)
    assert eng.image_version("registry:5000/vllm-openai") is None
    assert eng.image_version("vllm/vllm-openai:latest") is None


def test_older_vllm_gets_the_legacy_speculative_flags():
    data = stack_data("prod")
    data["versions"]["images"]["vllm"] = "vllm/vllm-openai:v0.7.3"
    objs = serving_objects(load_variant(data))["llama3-70b-chat"]
    args = args_of(find(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert args["--speculative-model"] == "/lustre/models/meta-llama-3.1-8b-instruct"
    assert args["--num-speculative-tokens"] == str(data["serving"][0]["speculative"]["num_tokens"])
    assert "--speculative-config" not in args


# ---------------------------------------------------------------- bad deployments


def test_a_draft_model_on_vllm_without_v0_is_refused():
    data = stack_data("prod")
    data["versions"]["images"]["vllm"] = "vllm/vllm-openai:v0.12.0"
    found = errors(data)
    assert found["aiinfra:cluster.serving[0].speculative.draft_model"] == "serving-engine-flag"


def test_multi_node_without_ray_needs_a_recent_vllm_but_ray_works_everywhere():
    data = stack_data("prod")
    data["serving"][1]["image"] = "vllm"  # 0.8.5
    assert errors(data)["aiinfra:cluster.serving[1].distributed_backend"] == "serving-engine-flag"
    data["serving"][1]["distributed_backend"] = "ray"
    assert not errors(data)
    tpl = find(serving_objects(load_variant(data))["llama3-405b"], "LeaderWorkerSet")["spec"][
        "leaderWorkerTemplate"]
    leader = tpl["leaderTemplate"]["spec"]["containers"][0]["command"][-1]
    worker = tpl["workerTemplate"]["spec"]["containers"][0]["command"][-1]
    assert leader.startswith("ray start --head --port=6379") and "--distributed-executor-backend ray" in leader
    assert "ray start --address=$LWS_LEADER_ADDRESS:6379" in worker and "--block" in worker


@pytest.mark.parametrize(("change", "path", "eid"), [
    (lambda d: d["serving"][1].update(tp=4, pp=3), "serving[1].pp", "serving-layout"),
    (lambda d: d["serving"][1].update(tp=16, pp=1), "serving[1].tp", "serving-layout"),
    (lambda d: d["serving"][0].update(max_replicas=250), "serving[1].replicas", "serving-over-capacity"),
    (lambda d: d["serving"][2].update(autoscaling="keda"), "serving[2].autoscaling", "serving-autoscaling"),
    (lambda d: d["serving"][0].update(min_replicas=60, max_replicas=55), "serving[0].max_replicas",
     "serving-autoscaling"),
    (lambda d: d["serving"][1].update(weights_source="local-nvme"), "serving[1].weights_manifest_sha256",
     "serving-weights"),
    (lambda d: d["serving"][0].update(weights_path="/data/llama"), "serving[0].weights_path", "serving-weights"),
    (lambda d: d["versions"]["images"].update(vllm="vllm/vllm-openai:latest"), "serving[0].image",
     "serving-engine-version"),
    (lambda d: d["serving"][2].update(quantization="gptq-int4"), "serving[2].quantization", "serving-engine-flag"),
    (lambda d: d["serving"][0].update(speculative={"draft_model": "llama2-7b"}), "serving[0]", "plan-serving"),
    (lambda d: d["serving"][0].update(tp=3), "serving[0]", "plan-serving"),
])
def test_bad_deployment_is_reported_at_its_key(change, path, eid):
    data = stack_data("prod")
    change(data)
    assert errors(data).get(f"aiinfra:cluster.{path}") == eid, errors(data)


def test_prod_fits_its_32_serving_nodes():
    from conftest import load_stack

    specs = load_stack("prod").plan.deployments
    used = sum(s.gpus(s.max_replicas) for s in specs if s.group.name == "gpu-serve")
    assert used <= 32 * 8
    assert not errors(stack_data("prod"))


def test_serving_ids_are_documented():
    doc = (ROOT / "docs" / "validation.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.M))
    assert documented >= SERVING_ERRORS
    source = (ROOT / "src" / "aiinfra" / "render" / "serving.py").read_text()
    assert set(re.findall(r'"(serving-[a-z-]+)"', source)) <= SERVING_ERRORS
