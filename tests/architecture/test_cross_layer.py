"""Cross-layer agreement over every committed environment (stacks/Pulumi.*.yaml).

Each test compares two layers that are built by different code: the fabric model with the
resolved plan and the rendered pods; ``aiinfra plan --json`` with the rendered job scripts and
Kubernetes objects; the node labels the hosts register with and the pods' node selectors; the
objects Pulumi applies and the files Argo CD syncs. A new environment is covered by committing
its stack file.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiinfra.catalog.k8s_resources import GPU_RESOURCE, NODE_GROUP_LABEL
from aiinfra.pipeline import Built
from conftest import ROOT, load_stack, render

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_helpers import (  # noqa: E402
    command_options,
    command_words,
    default_program,
    flag,
    sbatch_options,
    shell_assignments,
    shell_values,
)

ENVS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
#: environment variables of the fabric (NCCL, its UCX transport, SHARP)
FABRIC_ENV = ("NCCL_", "UCX_", "SHARP_")
#: the port of every rail HCA in NCCL_IB_HCA / UCX_NET_DEVICES
PORT = "1"
VLLM_SERVE = ["vllm", "serve"]  # vLLM's CLI: `vllm serve MODEL --flags` (the model positional)


# ---------------------------------------------------------------- what the layers say


@cache
def rendered(env: str, renderer: str) -> dict[str, str]:
    return render(load_stack(env), only=[renderer])


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@cache
def serving_files(env: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Deployment name -> file name -> the objects of k8s/serving/<name>/<file> (kustomization.yaml aside)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for path, text in rendered(env, "k8s-serving").items():
        m = re.fullmatch(r"k8s/serving/([^/]+)/([^/]+\.yaml)", path)
        if m and m.group(2) != "kustomization.yaml":
            out.setdefault(m.group(1), {})[m.group(2)] = documents(text)
    return out


def rendered_objects(env: str, name: str) -> list[dict[str, Any]]:
    return [o for objs in serving_files(env)[name].values() for o in objs]


def workload_of(env: str, name: str) -> dict[str, Any]:
    return next(o for o in rendered_objects(env, name) if o["kind"] in ("Deployment", "LeaderWorkerSet"))


def pod_templates(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Role -> pod template of a workload object (Deployment, LeaderWorkerSet, Job, PyTorchJob)."""
    spec = obj.get("spec", {})
    if obj["kind"] == "LeaderWorkerSet":
        lwt = spec["leaderWorkerTemplate"]
        return {"leader": lwt["leaderTemplate"], "worker": lwt["workerTemplate"]}
    if obj["kind"] == "PyTorchJob":
        return {role.lower(): r["template"] for role, r in spec["pytorchReplicaSpecs"].items()}
    if "template" in spec:
        return {"pod": spec["template"]}
    return {}


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def fabric_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(FABRIC_ENV)}


def hcas_named(value: str, *, exact_prefix: bool) -> list[str]:
    """HCA names of an NCCL_IB_HCA ('=mlx5_0:1,...') or UCX_NET_DEVICES ('mlx5_0:1,...') value."""
    if exact_prefix:
        assert value.startswith("="), f"{value!r}: without '=' NCCL matches HCA names by prefix"
        value = value[1:]
    out = []
    for item in value.split(","):
        hca, _, port = item.partition(":")
        assert port == PORT, f"{item!r}: rail HCAs are single-port cards, port {PORT}"
        out.append(hca)
    return out


_PLAN_JSON: dict[str, dict[str, Any]] = {}


@pytest.fixture
def plan_json(aiinfra):
    """``aiinfra plan --stack ENV --json`` as a user runs it (in-process), once per environment."""

    def get(env: str) -> dict[str, Any]:
        if env not in _PLAN_JSON:
            result = aiinfra("plan", "--stack", env, "--json")
            assert result.code == 0, result.stderr
            _PLAN_JSON[env] = json.loads(result.stdout)
        return _PLAN_JSON[env]

    return get


def _workloads() -> list[Any]:
    jobs, deployments = [], []
    for env in ENVS:
        built = load_stack(env)
        jobs += [pytest.param(env, j.name, id=f"{env}-{j.name}") for j in built.plan.jobs]
        deployments += [pytest.param(env, d.name, id=f"{env}-{d.name}") for d in built.plan.deployments]
    return [jobs, deployments]


JOBS, DEPLOYMENTS = _workloads()
MULTI_NODE = [p for p in DEPLOYMENTS
              if next(d for d in load_stack(p.values[0]).plan.deployments if d.name == p.values[1]).multi_node]


def job(built: Built, name: str):
    return next(j for j in built.plan.jobs if j.name == name)


def deployment(built: Built, name: str):
    return next(d for d in built.plan.deployments if d.name == name)


def rail_hcas_of_every_host(built: Built, group) -> list[list[str]]:
    return [[port.hca for port in built.cluster.hosts[h].rails] for h in group.hosts]


def assert_names_the_rails(nccl: dict[str, str], built: Built, group, what: str) -> None:
    per_host = rail_hcas_of_every_host(built, group)
    assert per_host, f"{what}: group '{group.name}' has no hosts"
    if not any(per_host):
        assert nccl.get("NCCL_IB_DISABLE") == "1", f"{what}: no rails, yet NCCL may look for InfiniBand HCAs"
        return
    for key, exact in (("NCCL_IB_HCA", True), ("UCX_NET_DEVICES", False)):
        assert key in nccl, f"{what}: no {key}: NCCL/UCX pick whatever HCAs they find"
        named = hcas_named(nccl[key], exact_prefix=exact)
        for host, rails in zip(group.hosts, per_host, strict=True):
            assert named == rails, f"{what}: {key} names {named}, host {host}'s rails are {rails}"


# ---------------------------------------------------------------- 1. NCCL names the rails of every host


@pytest.mark.parametrize(("env", "name"), JOBS)
def test_job_nccl_names_the_rail_hcas_of_every_host(env, name):
    built = load_stack(env)
    m = job(built, name)
    assert_names_the_rails(m.nccl, built, m.group, f"job {name}")


# Before commit 46a18e9 the 405B LeaderWorkerSet's pods had no NCCL environment at all (NCCL picked
# whatever HCAs it found): the rendered leader/worker part of this test fails on that code.
@pytest.mark.parametrize(("env", "name"), MULTI_NODE)
def test_multi_node_deployment_nccl_names_the_rail_hcas_of_every_host(env, name):
    built = load_stack(env)
    s = deployment(built, name)
    assert_names_the_rails(s.nccl, built, s.group, f"deployment {name}")
    lws = workload_of(env, name)
    assert lws["kind"] == "LeaderWorkerSet"
    templates = pod_templates(lws)
    assert set(templates) == {"leader", "worker"}
    for role, template in templates.items():
        (server,) = [c for c in template["spec"]["containers"] if c["name"] == "server"]
        pod_env = container_env(server)
        assert "NCCL_IB_HCA" in pod_env and "UCX_NET_DEVICES" in pod_env, f"{name} {role}: no NCCL rail environment"
        assert_names_the_rails(pod_env, built, s.group, f"{name} {role} pod")
        assert fabric_env(pod_env) == s.nccl, f"{name} {role}: the pod's NCCL environment is not the plan's"


# ---------------------------------------------------------------- 2. plan --json == the rendered files


def _unenroot(image: str) -> str:
    """pyxis/enroot's 'registry#path' back to a registry reference."""
    return image.replace("#", "/", 1)


HEADER = re.compile(r"# .+, (?P<framework>\w+), on (?P<nodes>\d+) node\(s\) x (?P<gpus>\d+) GPUs = (?P<world>\d+) GPUs "
                    r"of group '(?P<group>[^']+)'\.")


def _from_header(script: str) -> dict[str, Any]:
    m = HEADER.search(script)
    assert m, "the script's header names no framework, layout and group"
    assert int(m["world"]) == int(m["nodes"]) * int(m["gpus"])
    ckpt = next(line for line in script.splitlines() if line.startswith("# Checkpoint every"))
    return {"framework": m["framework"], "node_group": m["group"],
            "checkpoint_source": "planner" if "Young/Daly" in ckpt else "blueprint"}


def _layout(args: list[str], deepspeed: dict[str, Any] | None, world_size: int) -> dict[str, Any]:
    """The layout the framework arguments (and DeepSpeed JSON) ask for."""
    if deepspeed is not None:
        micro, accumulation = deepspeed["train_micro_batch_size_per_gpu"], deepspeed["gradient_accumulation_steps"]
        dp = world_size  # DeepSpeed here: data parallel only
        assert deepspeed["train_batch_size"] == micro * accumulation * dp
        return {"tp": 1, "pp": 1, "vpp": 1, "cp": 1, "dp": dp, "micro_batch": micro,
                "global_batch": deepspeed["train_batch_size"],
                "recompute": "full" if "--gradient-checkpointing" in args else "none",
                "zero_stage": deepspeed["zero_optimization"]["stage"]}
    tp, pp = int(flag(args, "--tensor-model-parallel-size")), int(flag(args, "--pipeline-model-parallel-size"))
    cp = int(flag(args, "--context-parallel-size") or 1)
    per_virtual = flag(args, "--num-layers-per-virtual-pipeline-stage")
    vpp = int(flag(args, "--num-layers")) // (pp * int(per_virtual)) if per_virtual else 1
    if "--recompute-activations" in args:
        recompute = "selective"
    elif flag(args, "--recompute-granularity") == "full":
        recompute = "full"
    else:
        recompute = "none"
    return {"tp": tp, "pp": pp, "vpp": vpp, "cp": cp, "dp": world_size // (tp * pp * cp),
            "micro_batch": int(flag(args, "--micro-batch-size")), "global_batch": int(flag(args, "--global-batch-size")),
            "recompute": recompute, "zero_stage": 1 if "--use-distributed-optimizer" in args else 0}


def _slurm_job(env: str, name: str) -> dict[str, Any]:
    files = rendered(env, "jobs")
    script = files[f"jobs/{name}/sbatch.sh"]
    opts = sbatch_options(script)
    args, exported = shell_values(script)
    header = _from_header(script)
    srun = command_options(command_words(script, "srun"))
    values = shell_assignments(script, ["CONTAINER_IMAGE", "CHECKPOINT_DIR", "CHECKPOINT_KEEP"])
    nodes, gpus = int(opts["nodes"]), int(opts["gres"].removeprefix("gpu:"))
    assert int(srun["nodes"]) == nodes
    tasks = int(srun["ntasks-per-node"])
    assert int(srun["ntasks"]) == nodes * tasks
    if "--overcommit" not in script:
        assert int(opts["ntasks-per-node"]) == tasks, "the allocation's tasks per node are the step's"
    deepspeed = None
    config = flag(args, "--deepspeed_config")
    if config is not None:
        deepspeed = json.loads(files[f"jobs/{name}/deepspeed.json"])
        # the batch script writes the same JSON where the arguments point
        heredoc = script.split("<<'DEEPSPEED_JSON'\n", 1)[1].split("\nDEEPSPEED_JSON\n", 1)[0]
        assert json.loads(heredoc) == deepspeed
        assert config == f"{values['CHECKPOINT_DIR']}/deepspeed.json"
    program = default_program(script)
    world = nodes * gpus
    if "exec torchrun" in script:
        assert re.search(rf"--nproc-per-node={gpus}\b", script), "torchrun starts one worker per GPU"
    else:
        assert tasks == gpus, "one srun task per GPU"
    return {
        "scheduler": "slurm", "nodes": nodes, "gpus_per_node": gpus, "world_size": world,
        "image": _unenroot(values["CONTAINER_IMAGE"]), "partition": opts.get("partition"),
        "time_limit": opts.get("time"), "switches": int(opts["switches"]) if "switches" in opts else None,
        "tasks_per_node": tasks, "cpus_per_task": int(opts["cpus-per-task"]),
        "layout": _layout(args, deepspeed, world),
        "checkpoint": {"dir": values["CHECKPOINT_DIR"], "interval_steps": int(flag(args, "--save-interval")),
                       "keep": int(values["CHECKPOINT_KEEP"]), "source": header["checkpoint_source"]},
        "train_iters": int(flag(args, "--train-iters")), "entrypoint": program[-1],
        "nccl": fabric_env(exported), "args": args, "deepspeed": deepspeed,
        "framework": header["framework"], "node_group": header["node_group"],
        "name": opts["job-name"], "_exports": exported,
    }


def _pytorch_job(env: str, name: str) -> dict[str, Any]:
    objs = {o["kind"]: o for o in documents(rendered(env, "jobs")[f"jobs/{name}/pytorchjob.yaml"])}
    config, ptj = objs["ConfigMap"], objs["PyTorchJob"]
    launch = config["data"]["launch.sh"]
    args, _ = shell_values(launch)
    header = _from_header(launch)
    replicas = ptj["spec"]["pytorchReplicaSpecs"]
    templates = pod_templates(ptj)
    pods = [t["spec"] for t in templates.values()]
    containers = [c for p in pods for c in p["containers"]]
    assert len({json.dumps(c, sort_keys=True) for c in containers}) == 1, "master and workers run the same container"
    assert all(len(p["containers"]) == 1 for p in pods), "one container (one torchrun) per pod"
    container = containers[0]
    (selector,) = {p["nodeSelector"][NODE_GROUP_LABEL] for p in pods}
    gpus = container["resources"]["limits"][GPU_RESOURCE]
    assert container["resources"]["requests"][GPU_RESOURCE] == gpus
    nodes = sum(r["replicas"] for r in replicas.values())
    torchrun = command_words(launch, "torchrun")
    run_opts = command_options(torchrun)
    assert int(run_opts["nnodes"]) == nodes and int(run_opts["nproc-per-node"]) == gpus
    assert int(ptj["spec"]["nprocPerNode"]) == gpus
    entrypoint = next(w for w in torchrun[1:] if not w.startswith("--"))
    values = shell_assignments(launch, ["CHECKPOINT_DIR", "CHECKPOINT_KEEP"])
    deepspeed = None
    config_path = flag(args, "--deepspeed_config")
    if config_path is not None:
        mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "job")
        volume = next(v for p in pods for v in p["volumes"] if v["name"] == "job")
        assert volume["configMap"]["name"] == config["metadata"]["name"]
        assert config_path == f"{mount}/deepspeed.json", "the arguments name the mounted ConfigMap's file"
        deepspeed = json.loads(config["data"]["deepspeed.json"])
    env_vars = container_env(container)
    world = nodes * gpus
    return {
        "scheduler": "kubernetes", "nodes": nodes, "gpus_per_node": gpus, "world_size": world,
        "image": container["image"], "partition": None, "time_limit": None, "switches": None,
        "tasks_per_node": 1, "cpus_per_task": None,
        "layout": _layout(args, deepspeed, world),
        "checkpoint": {"dir": values["CHECKPOINT_DIR"], "interval_steps": int(flag(args, "--save-interval")),
                       "keep": int(values["CHECKPOINT_KEEP"]), "source": header["checkpoint_source"]},
        "train_iters": int(flag(args, "--train-iters")), "entrypoint": entrypoint,
        "nccl": fabric_env(env_vars), "args": args, "deepspeed": deepspeed,
        "framework": header["framework"], "node_group": selector,
        "name": ptj["metadata"]["name"], "_exports": env_vars,
    }


@pytest.mark.parametrize("env", ENVS)
def test_plan_json_lists_what_is_rendered(env, plan_json):
    data = plan_json(env)
    job_dirs = {p.split("/")[1] for p in rendered(env, "jobs") if p.startswith("jobs/")}
    assert sorted(j["name"] for j in data["jobs"]) == sorted(job_dirs)
    k8s_deployments = sorted(serving_files(env))
    assert sorted(d["name"] for d in data["deployments"]) == k8s_deployments


@pytest.mark.parametrize(("env", "name"), JOBS)
def test_plan_json_job_is_what_its_files_run(env, name, plan_json):
    planned = next(j for j in plan_json(env)["jobs"] if j["name"] == name)
    files = rendered(env, "jobs")
    seen = _slurm_job(env, name) if f"jobs/{name}/sbatch.sh" in files else _pytorch_job(env, name)
    exported = seen.pop("_exports")
    # the job's own environment (threads, Megatron's stream limit) is exported / set in the pod too
    seen["env"] = {k: exported[k] for k in planned["env"] if k in exported}
    assert set(seen) == set(planned), "a field of plan --json that the files do not say (or the reverse)"
    for key in sorted(planned):
        assert seen[key] == planned[key], f"{name}: plan --json {key}={planned[key]!r}, files say {seen[key]!r}"


def _engine_args(container: dict[str, Any]) -> tuple[str, list[str]]:
    """(engine, the server's argument list after its entry point) of a serving container."""
    command = container["command"]
    if command == ["trtllm-serve"]:
        args = container["args"]
        assert not args[0].startswith("--"), "trtllm-serve's first argument is the engine directory"
        return "tensorrt-llm", args  # as vllm serve's: the positional argument, then the flags
    if command[:2] == ["/bin/sh", "-c"]:  # Ray: the leader's script execs the API server
        line = next((ln for ln in command[2].splitlines() if " ".join(VLLM_SERVE) in ln), None)
        if line is None:
            return "vllm", []
        words = shlex.split(line)
        return "vllm", words[words.index(VLLM_SERVE[-1]) + 1:]
    assert command == VLLM_SERVE
    return "vllm", container.get("args", [])


def _rendered_deployment(env: str, name: str) -> dict[str, Any]:
    objs = rendered_objects(env, name)
    work = workload_of(env, name)
    templates = pod_templates(work)
    leader = templates.get("leader", templates.get("pod"))
    (server,) = [c for c in leader["spec"]["containers"] if c["name"] == "server"]
    engine, args = _engine_args(server)
    gpus = server["resources"]["limits"][GPU_RESOURCE]
    assert server["resources"]["requests"][GPU_RESOURCE] == gpus
    size = work["spec"]["leaderWorkerTemplate"]["size"] if work["kind"] == "LeaderWorkerSet" else 1
    replicas = work["spec"]["replicas"]
    scalers = [o for o in objs if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]
    if scalers:
        (scaler,) = scalers
        s = scaler["spec"]
        assert s["scaleTargetRef"]["kind"] == work["kind"] and s["scaleTargetRef"]["name"] == work["metadata"]["name"]
        low, high = (s.get("minReplicaCount"), s.get("maxReplicaCount")) if scaler["kind"] == "ScaledObject" \
            else (s.get("minReplicas"), s.get("maxReplicas"))
    else:
        low = high = replicas  # no autoscaler: the replica count is fixed
    worker_args = None
    if "worker" in templates:
        (worker,) = [c for c in templates["worker"]["spec"]["containers"] if c["name"] == "server"]
        worker_args = worker.get("args") or None
        assert fabric_env(container_env(worker)) == fabric_env(container_env(server))
    tp_flag, pp_flag = (("--tp_size", "--pp_size") if engine == "tensorrt-llm"
                        else ("--tensor-parallel-size", "--pipeline-parallel-size"))
    tp, pp = int(flag(args, tp_flag)), int(flag(args, pp_flag))
    for build in (o for o in objs if o["kind"] == "Job"):  # TensorRT-LLM: the engine is built for the same TP/PP
        words = shlex.split(build["spec"]["template"]["spec"]["containers"][0]["command"][2])
        assert (int(flag(words, "--tp_size")), int(flag(words, "--pp_size"))) == (tp, pp)
    selectors = {t["spec"]["nodeSelector"][NODE_GROUP_LABEL] for t in templates.values()}
    (group,) = selectors
    return {
        "name": work["metadata"]["name"], "kind": work["kind"], "engine": engine, "node_group": group,
        "image": server["image"], "tp": tp, "pp": pp, "gpus_per_replica": size * gpus, "nodes_per_replica": size,
        "gpus_per_pod": gpus, "replicas": replicas, "min_replicas": low, "max_replicas": high,
        "weights_dir": flag(args, "--tokenizer") if engine == "tensorrt-llm" else args[0],  # vllm serve MODEL
        "nccl": fabric_env(container_env(server)), "args": args, "worker_args": worker_args,
    }


@pytest.mark.parametrize(("env", "name"), DEPLOYMENTS)
def test_plan_json_deployment_is_what_its_objects_run(env, name, plan_json):
    planned = next(d for d in plan_json(env)["deployments"] if d["name"] == name)
    seen = _rendered_deployment(env, name)
    assert set(seen) == set(planned), "a field of plan --json that the objects do not say (or the reverse)"
    for key in sorted(planned):
        assert seen[key] == planned[key], f"{name}: plan --json {key}={planned[key]!r}, objects say {seen[key]!r}"


# ---------------------------------------------------------------- 3. node labels and pod selectors


def _node_registrations(env: str) -> dict[str, dict[str, Any]]:
    text = rendered(env, "k8s-hosts").get("k8s-hosts/nodes.yaml", "")
    return yaml.safe_load(text) or {}


def _pods_of(env: str) -> list[tuple[str, int, dict[str, Any]]]:
    """(what, how many such pods, pod spec) of every serving and training pod template."""
    out = []
    for name in serving_files(env):
        for obj in rendered_objects(env, name):
            for role, template in pod_templates(obj).items():
                count = obj["spec"].get("replicas", 1)
                if obj["kind"] == "LeaderWorkerSet":
                    size = obj["spec"]["leaderWorkerTemplate"]["size"]
                    count *= 1 if role == "leader" else size - 1
                out.append((f"{obj['kind']} {name} {role}", count, template["spec"]))
    for path, text in rendered(env, "jobs").items():
        if path.endswith("/pytorchjob.yaml"):
            for obj in documents(text):
                if obj["kind"] == "PyTorchJob":
                    for role, spec in obj["spec"]["pytorchReplicaSpecs"].items():
                        out.append((f"PyTorchJob {obj['metadata']['name']} {role}", spec["replicas"],
                                    spec["template"]["spec"]))
    return out


def _tolerates(pod: dict[str, Any], taint: dict[str, str]) -> bool:
    for t in pod.get("tolerations", []):
        if t.get("effect") not in (None, "", taint["effect"]):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, taint["key"]):
            return True
        if t.get("key") == taint["key"] and t.get("value") == taint.get("value"):
            return True
    return False


@pytest.mark.parametrize("env", ENVS)
def test_pods_select_registered_nodes_that_hold_their_gpus(env):
    built = load_stack(env)
    nodes = _node_registrations(env)
    pods = _pods_of(env)
    if pods:
        assert nodes, "pods but no Kubernetes node registrations"
    for what, count, pod in pods:
        selector = pod.get("nodeSelector", {})
        assert NODE_GROUP_LABEL in selector, f"{what}: no node-group selector"
        matching = [n for n, reg in nodes.items()
                    if all(reg["labels"].get(k) == v for k, v in selector.items())]
        assert matching, f"{what}: no registered node carries {selector}"
        schedulable = [n for n in matching
                       if all(_tolerates(pod, t) for t in nodes[n]["taints"] if t["effect"] == "NoSchedule")]
        assert schedulable == matching, f"{what}: does not tolerate the taints of {set(matching) - set(schedulable)}"
        want = max(int(c.get("resources", {}).get("requests", {}).get(GPU_RESOURCE, 0)) for c in pod["containers"])
        if not want:
            continue
        # GPUs per node from the inventory's model of each selected node's group
        per_node = {n: built.cluster.groups[built.cluster.hosts[n].group].gpus_per_node for n in matching}
        fit = sum(g // want for g in per_node.values())
        assert fit >= count, f"{what}: {count} pods of {want} GPUs, the {len(matching)} selected nodes hold {fit}"


# ---------------------------------------------------------------- 4. Pulumi applies what the files hold


def _key(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True)


@pytest.mark.parametrize("env", ENVS)
def test_pulumi_serving_objects_are_the_rendered_documents(env):
    from aiinfra.render.serving import objects

    built = load_stack(env)
    applied = objects(built.cluster, built.plan)
    assert sorted(applied) == sorted(serving_files(env))
    for name, objs in applied.items():
        kustomization = yaml.safe_load(rendered(env, "k8s-serving")[f"k8s/serving/{name}/kustomization.yaml"])
        listed = [o for f in kustomization["resources"] for o in serving_files(env)[name][f]]
        assert sorted(map(_key, objs)) == sorted(map(_key, listed)), f"{name}: Pulumi and Argo CD apply different objects"
