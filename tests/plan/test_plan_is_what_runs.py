"""The plan is what runs: the sharding the planner sized memory for is the one the rendered job
asks its framework for; ``aiinfra size`` plans exactly as the blueprint path does; the defaults
both paths use are typed once."""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from aiinfra.catalog.gpus import gpu
from aiinfra.catalog.models import model
from aiinfra.errors import BlueprintError
from aiinfra.pipeline import Built, build_data
from aiinfra.plan.common import PlanError
from aiinfra.plan.training import TrainingRequest, plan_training
from conftest import ROOT, load_stack, render

SRC = ROOT / "src" / "aiinfra"


def _raw(env: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())["config"]["aiinfra:cluster"]


def _megatron_index(raw: dict) -> int:
    return next(i for i, j in enumerate(raw["training"]) if j.get("framework", "megatron") == "megatron")


def _dev_with(**changes: object) -> dict:
    raw = copy.deepcopy(_raw("dev"))
    raw["training"][_megatron_index(raw)].update(changes)
    return raw


# ---------------------------------------------------------------- Megatron runs the distributed optimizer only


@pytest.mark.parametrize("changes", [
    {"zero_stage": 3},
    {"zero_stage": 2},
    {"fsdp": True},
    {"zero_stage": 1, "distributed_optimizer": False},  # stage 1 is the distributed optimizer
])
def test_megatron_sharding_it_cannot_run_is_refused_with_its_id(changes):
    raw = _dev_with(**changes)
    with pytest.raises(BlueprintError) as exc:
        build_data(raw, "dev.yaml", "dev")
    found = {(p.id, p.path) for p in exc.value.problems}
    index = _megatron_index(raw)
    key = "fsdp" if "fsdp" in changes else "zero_stage"
    assert ("train-megatron-sharding", ("training", index, key)) in found, found


def test_deepspeed_runs_every_zero_stage():
    raw = copy.deepcopy(_raw("dev"))
    index = next(i for i, j in enumerate(raw["training"]) if j.get("framework") == "deepspeed")
    for stage in (1, 2, 3):
        raw["training"][index]["zero_stage"] = stage
        built = build_data(raw, "dev.yaml", "dev")
        job = next(j for j in built.plan.jobs if j.framework == "deepspeed")
        assert job.plan.layout.zero_stage == stage
        assert job.deepspeed["zero_optimization"]["stage"] == stage


@pytest.mark.parametrize(("framework", "distributed_optimizer", "stages"), [
    ("megatron", True, {1}),
    ("megatron", False, {0}),
    ("deepspeed", True, {0, 1, 2, 3}),
])
def test_auto_zero_stage_picks_only_stages_the_framework_runs(framework, distributed_optimizer, stages):
    # Llama 3 405B on 8,192 H100 (TP 8, PP 16, VPP 8): with gradients sharded it fits without
    # recomputation, which made the search pick ZeRO stage 2 for Megatron
    req = TrainingRequest(
        model("llama3-405b"), gpu("h100"), 8192, tp=8, pp=16, dp=64, vpp=8, global_batch_tokens=16 * 2**20,
        recompute=None, zero_stage=None, framework=framework, distributed_optimizer=distributed_optimizer,
    )
    try:
        plan = plan_training(req)
    except PlanError:
        return  # nothing the framework runs fits: refused, not planned with a stage it lacks
    assert plan.layout.zero_stage in stages
    assert all(c.layout.zero_stage in stages for c in plan.alternatives)


def test_megatron_zero_stage_3_request_is_refused_by_the_planner():
    req = TrainingRequest(model("llama3-8b"), gpu("h100"), 8, zero_stage=3, framework="megatron")
    with pytest.raises(PlanError, match="stage 1"):
        plan_training(req)


# ---------------------------------------------------------------- rendered arguments express the plan


def _variants() -> list[tuple[str, Built]]:
    out = [(env, load_stack(env)) for env in ("dev", "prod")]
    no_distopt = _dev_with(distributed_optimizer=False)  # zero_stage left at its default
    out.append(("dev, no distributed optimizer", build_data(no_distopt, "dev.yaml", "dev")))
    return out


@pytest.mark.parametrize(("what", "built"), _variants(), ids=lambda v: v if isinstance(v, str) else "")
def test_rendered_sharding_is_the_planned_one(what, built):
    files = render(built, only=["jobs"])
    assert built.plan.jobs, what
    for job in built.plan.jobs:
        stage = job.plan.layout.zero_stage
        if job.framework == "megatron":
            script = files[f"jobs/{job.name}/sbatch.sh"]
            flags = set(re.findall(r"(?<![\w-])--[a-z0-9-]+", script))
            assert ("--use-distributed-optimizer" in flags) == (stage >= 1), (what, job.name, stage)
            assert stage in (0, 1), (what, job.name)
            assert not {"--use-torch-fsdp2", "--use-custom-fsdp"} & flags
        else:
            pods = [d for d in yaml.safe_load_all(files[f"jobs/{job.name}/pytorchjob.yaml"]) if d]
            config = next(d for d in pods if d["kind"] == "ConfigMap")
            ds = json.loads(config["data"]["deepspeed.json"])
            assert ds["zero_optimization"]["stage"] == stage, (what, job.name)


def test_megatron_memory_is_the_distributed_optimizers():
    # Megatron-LM docs (distributed optimizer): bf16 weights, fp32 gradients: 6 + 12/d bytes per
    # parameter; the planned model states of every Megatron job in prod follow it
    for job in load_stack("prod").plan.jobs:
        if job.framework != "megatron":
            continue
        mem, lay = job.plan.memory, job.plan.layout
        d = lay.dp * lay.cp
        assert mem.model_states_bytes == pytest.approx(mem.params_per_gpu * (6 + 12 / d), rel=1e-6)


# ---------------------------------------------------------------- size train = the blueprint path


def test_size_train_plans_the_prod_70b_job_as_the_blueprint_does(aiinfra):
    job = _raw("prod")["training"][0]
    built = load_stack("prod")
    planned = next(p for p, _ in built.plan.training if p.request.name == job["name"])
    # only what the blueprint writes that has no default there: everything else is the default
    result = aiinfra(
        "size", "train", "--model", job["model"], "--gpus", str(planned.request.gpus),
        "--tp", str(job["tp"]), "--global-batch", str(job["global_batch"]), "--tokens", str(job["tokens"]),
        "--json",
    )
    assert result.code == 0, result.stderr
    sized = json.loads(result.stdout)
    assert sized["layout"] == planned.to_dict()["layout"]
    assert sized["memory"] == planned.to_dict()["memory"]
    assert sized["step_time_s"] == pytest.approx(planned.step_time_s)


def test_size_serve_builds_the_deployment_as_the_blueprint_does(aiinfra):
    dep = _raw("prod")["serving"][0]
    built = load_stack("prod")
    planned = next(p for p in built.plan.serving if p.request.name == dep["name"])
    args = ["size", "serve", "--model", dep["model"], "--gpu", planned.request.gpu.name, "--json"]
    flags = {"quantization": "--quant", "max_model_len": "--max-model-len", "tp": "--tp", "pp": "--pp",
             "target_tokens_per_s": "--target-tokens-per-s", "kv_cache_dtype": "--kv-dtype"}
    for key, name in flags.items():
        if key in dep:
            args += [name, str(dep[key])]
    if "speculative" in dep:
        args += ["--draft", dep["speculative"]["draft_model"]]
    result = aiinfra(*args)
    assert result.code == 0, result.stderr
    sized = json.loads(result.stdout)
    expected = planned.to_dict()
    for key in ("tp", "pp", "replicas", "num_blocks", "max_concurrent_sequences", "weights_bytes"):
        assert sized[key] == expected[key], key


# ---------------------------------------------------------------- defaults typed once

#: names a default is bound to -> the values it had before it moved to aiinfra.catalog.defaults
DEFAULTS = {
    r"pue": {1.2},
    r"afr|annual_failure_rate": {0.05},
    r"node_overhead_w": {2000},
    r"inter_node_link|^link$": {"ndr400"},
    r"first_batch|batch_size|max_fail_percentage|drain_timeout_s": {1, 32, 0, 14400},
}


def _bindings(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """(name, value) of assignments, annotated fields, keyword arguments, parameter defaults and
    dict entries with a string key."""
    out: list[tuple[str, ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            out += [(t.id, node.value) for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out.append((node.target.id, node.value))
        elif isinstance(node, ast.keyword) and node.arg:
            out.append((node.arg, node.value))
        elif isinstance(node, ast.arguments):
            positional = node.posonlyargs + node.args
            out += list(zip([a.arg for a in positional[len(positional) - len(node.defaults):]], node.defaults,
                            strict=True))
            out += [(a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True) if d is not None]
        elif isinstance(node, ast.Dict):
            out += [(k.value, v) for k, v in zip(node.keys, node.values, strict=True)
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return out


def _literal_defaults() -> dict[str, set[str]]:
    """pattern -> modules binding one of its old literal values to a matching name."""
    found: dict[str, set[str]] = {p: set() for p in DEFAULTS}
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        for name, value in _bindings(ast.parse(path.read_text())):
            for pattern, literals in DEFAULTS.items():
                if not re.search(pattern, name.lower()):
                    continue
                consts = {n.value for n in ast.walk(value) if isinstance(n, ast.Constant)}
                if any(type(c) is type(lit) and c == lit for c in consts for lit in literals):
                    found[pattern].add(rel)
    return found


def test_shared_defaults_are_typed_in_one_module():
    found = _literal_defaults()
    for pattern in ("pue", "afr|annual_failure_rate", "node_overhead_w",
                    "first_batch|batch_size|max_fail_percentage|drain_timeout_s"):
        assert found[pattern] <= {"catalog/defaults.py"}, (pattern, found[pattern])
    # the fabric's own link-rate keys (spec/models.py) are the blueprint's fields, not the planner's
    assert found["inter_node_link|^link$"] <= {"catalog/defaults.py"}, found["inter_node_link|^link$"]


def test_blueprint_planner_and_cli_share_the_default_values():
    from aiinfra.catalog import defaults
    from aiinfra.plan import power, reliability
    from aiinfra.spec.models import Rollout, Site

    site = Site(power_budget=1.0)
    assert (site.pue, site.node_overhead_w, site.gpu_annual_failure_rate) == (
        defaults.DEFAULT_PUE, defaults.DEFAULT_NODE_OVERHEAD_W, defaults.DEFAULT_GPU_ANNUAL_FAILURE_RATE)
    assert Rollout().model_dump() == dict(defaults.DEFAULT_ROLLOUT)
    plan = power.plan_power([power.NodePower(1, gpu("h100"), 8)])
    assert plan.pue == site.pue and plan.node_overhead_power_w == site.node_overhead_w
    assert reliability.plan_reliability(8, 1e9, 1e9).annual_failure_rate == site.gpu_annual_failure_rate
    assert Path(defaults.__file__).name == "defaults.py"


def test_playbook_fallback_rollout_matches_the_blueprint_default():
    # playbooks/vars/rollout-defaults.yml repeats the defaults for inventories without the rendered
    # group_vars (YAML cannot import them): it must say what the blueprint's default renders
    from aiinfra.catalog import defaults

    fallback = yaml.safe_load((ROOT / "playbooks" / "vars" / "rollout-defaults.yml").read_text())["aiinfra_rollout"]
    expected = dict(defaults.DEFAULT_ROLLOUT)
    expected["serial"] = [expected["first_batch"], expected["batch_size"]]
    assert fallback == expected
