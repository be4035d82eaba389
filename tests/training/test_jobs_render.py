"""Job files beyond prod's: the Kubernetes PyTorchJob (strict CRD schema), DeepSpeed's JSON, the
launchers, checkpoint retention, the time-limit signal, and the validator's problems."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import time

import pytest
import yaml
from training_helpers import flag, function_source, sbatch_options, shell_values

from aiinfra.catalog import k8s_resources
from aiinfra.checks import registry
from aiinfra.checks.training import PROBLEM_IDS
from aiinfra.errors import BlueprintError, Level
from aiinfra.pipeline import build_data
from aiinfra.plan.fabric_env import nccl_env
from aiinfra.plan.jobs import switches_for
from conftest import ROOT, load_stack, render

DEV = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["aiinfra:cluster"]


@pytest.fixture(scope="module")
def dev_jobs() -> dict[str, str]:
    return render(load_stack("dev"), only=["jobs"])


def _objects(text: str) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(text) if d}


# ---------------------------------------------------------------- Kubernetes


def test_pytorchjob_is_valid_against_the_crd_and_kubernetes_schemas(dev_jobs):
    """The PyTorchJob against the official Kubeflow CRD made strict by tests/k8s_schema.py (only that CRD is
    read: the whole CRD index takes a minute); the ConfigMap and the pod template against Kubernetes'."""
    pytest.importorskip("kubernetes_validate")
    import jsonschema

    from k8s_schema import _strict, require_crds, validate_object

    crd = yaml.load((require_crds() / "kubeflow.org_pytorchjobs.yaml").read_text(), Loader=yaml.CSafeLoader)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    objs = _objects(dev_jobs["jobs/llama3-8b-finetune/pytorchjob.yaml"])
    job = objs["PyTorchJob"]
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", crd["spec"]["names"]["kind"])
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(job)]
    assert not errors, errors
    bad = copy.deepcopy(job)
    bad["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = "one"
    bad["spec"]["nprocsPerNode"] = "8"
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(bad))) == 2
    k8s = load_stack("dev").cluster.blueprint.versions.kubernetes
    assert not validate_object(objs["ConfigMap"], k8s)
    template = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", **template["metadata"]}, "spec": template["spec"]}
    assert not validate_object(pod, k8s)


def test_pytorchjob_queues_in_kueue_with_rdma_shm_and_lustre(dev_jobs):
    objs = _objects(dev_jobs["jobs/llama3-8b-finetune/pytorchjob.yaml"])
    job = objs["PyTorchJob"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == k8s_resources.local_queue(k8s_resources.TRAINING_NAMESPACE)
    assert job["metadata"]["namespace"] == k8s_resources.TRAINING_NAMESPACE
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}  # one node: no workers
    spec = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    (container,) = spec["containers"]
    limits = container["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": 8, k8s_resources.RDMA_SHARED_DEVICE_RESOURCE: 1}
    # memlock comes from the containerd unit (LimitMEMLOCK=infinity); no capability the namespace's
    # Pod Security baseline would refuse
    assert "capabilities" not in container["securityContext"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["lustre"]["persistentVolumeClaim"]["claimName"] == k8s_resources.LUSTRE_PVC
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["dshm"] == "/dev/shm" and mounts["lustre"] == "/lustre"
    assert spec["nodeSelector"] == {k8s_resources.NODE_GROUP_LABEL: "gpu-serve"}
    cluster = load_stack("dev").cluster
    env = {e["name"]: e["value"] for e in container["env"]}
    expected = nccl_env(cluster, cluster.groups["gpu-serve"], in_pod=True)
    assert {k: env[k] for k in expected} == expected and env["NCCL_SOCKET_IFNAME"] == "eth0"


def test_deepspeed_json_batch_is_micro_x_accumulation_x_dp(dev_jobs):
    config = _objects(dev_jobs["jobs/llama3-8b-finetune/pytorchjob.yaml"])["ConfigMap"]
    ds = json.loads(config["data"]["deepspeed.json"])
    plan = next(p for p, _ in load_stack("dev").plan.training if p.request.name == "llama3-8b-finetune")
    lay = plan.layout
    assert ds["train_batch_size"] == lay.global_batch == 64
    assert ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * lay.dp == ds["train_batch_size"]
    assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"] == {"enabled": True}
    assert "offload_optimizer" not in ds["zero_optimization"]
    launch = config["data"]["launch.sh"]
    args, _ = shell_values(launch)
    assert flag(args, "--deepspeed_config") == "/etc/aiinfra/job/deepspeed.json"
    assert "--nproc-per-node=8" in launch and "--node-rank=\"${RANK:-0}\"" in launch


def test_offload_to_cpu_shards_optimizer_and_parameters():
    bp = copy.deepcopy(DEV)
    job = next(j for j in bp["training"] if j["name"] == "llama3-8b-finetune")
    job["offload"] = "cpu"
    ds = next(m for m in build_data(bp, "dev.yaml", "dev").plan.jobs if m.name == job["name"]).deepspeed
    assert ds["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert ds["zero_optimization"]["offload_param"] == {"device": "cpu", "pin_memory": True}


# ---------------------------------------------------------------- Slurm, dev


def test_dev_smoke_job_renders_its_planned_pipeline(dev_jobs):
    args, env = shell_values(dev_jobs["jobs/llama3-8b-smoke/sbatch.sh"])
    plan = next(p for p, _ in load_stack("dev").plan.training if p.request.name == "llama3-8b-smoke")
    lay = plan.layout
    # the layout is the search's (tp, pp, vpp auto): the step-time model picks TP 2 without a pipeline
    # for 8B on one node (the constant-efficiency estimate picked PP with virtual stages)
    assert int(flag(args, "--pipeline-model-parallel-size")) == lay.pp
    if lay.vpp > 1:
        assert int(flag(args, "--num-layers-per-virtual-pipeline-stage")) * lay.pp * lay.vpp == 32
    else:
        assert "--num-layers-per-virtual-pipeline-stage" not in args
    assert "NCCL_COLLNET_ENABLE" not in env  # dev's fabric has no SHARP
    assert sbatch_options(dev_jobs["jobs/llama3-8b-smoke/sbatch.sh"])["switches"] == "1"


def test_switches_from_nodes_per_su():
    assert [switches_for(n, 32) for n in (1, 32, 33, 480)] == [1, 1, 2, 15]


def test_torchrun_launcher_starts_one_process_per_node():
    bp = copy.deepcopy(DEV)
    bp["training"][0]["launcher"] = "torchrun"
    text = render(build_data(bp, "dev.yaml", "dev"), only=["jobs"])["jobs/llama3-8b-smoke/sbatch.sh"]
    opts = sbatch_options(text)
    assert opts["ntasks-per-node"] == "1" and opts["cpus-per-task"] == "224"
    assert 'exec torchrun --nnodes="$SLURM_NNODES" --nproc-per-node=8 --node-rank="$SLURM_NODEID"' in text
    # the entry point is in the checkout the megatron_lm role makes: the pinned release on Lustre
    assert f"AIINFRA_PROGRAM:-/lustre/software/megatron-lm/{DEV['versions']['megatron_lm']}/pretrain_gpt.py}}" in text


def test_pruner_keeps_the_newest_complete_checkpoints(dev_jobs, tmp_path):
    fn = function_source(dev_jobs["jobs/llama3-8b-smoke/sbatch.sh"], "prune_checkpoints")
    for it in (100, 200, 300, 400, 500):
        (tmp_path / f"iter_{it:07d}").mkdir()
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("400")  # 500 is still being written
    subprocess.run(["bash", "-c", f"{fn}\nCHECKPOINT_DIR={tmp_path} CHECKPOINT_KEEP=2 prune_checkpoints"], check=True,
                   capture_output=True)
    assert sorted(p.name for p in tmp_path.glob("iter_*")) == ["iter_0000300", "iter_0000400", "iter_0000500"]


def test_usr1_checkpoints_and_requeues(dev_jobs, tmp_path):
    """The batch script under stand-in srun/scontrol: USR1 -> SIGTERM to the step -> scontrol requeue."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    (bin_dir / "srun").write_text(f"""#!/bin/bash
echo "srun $*" >> {log}
echo $$ > {tmp_path}/srun.pid
trap 'echo "step got TERM" >> {log}; exit 0' TERM
sleep 30 >/dev/null 2>&1 & wait
""")
    # Slurm delivers `scancel --signal=TERM JOB.0` to the step's tasks: here, the stand-in srun
    (bin_dir / "scancel").write_text(f"""#!/bin/bash
echo "scancel $*" >> {log}
kill -TERM "$(cat {tmp_path}/srun.pid)"
""")
    (bin_dir / "scontrol").write_text(f"""#!/bin/bash
if [[ "$1 $2" == "show hostnames" ]]; then echo node01; echo node02; else echo "scontrol $*" >> {log}; fi
""")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    script = tmp_path / "sbatch.sh"
    script.write_text(dev_jobs["jobs/llama3-8b-smoke/sbatch.sh"].replace("/lustre/checkpoints/dev/llama3-8b-smoke",
                                                                         str(tmp_path / "ckpt")))
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="node[01-02]",
               AIINFRA_NO_CONTAINER="1")
    proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 10
    while not (tmp_path / "srun.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    lines = log.read_text().splitlines()
    assert lines[0].startswith("srun --kill-on-bad-exit=1 --mpi=none --nodes=1 --ntasks=8 --ntasks-per-node=8 bash -c")
    assert "--container-image" not in lines[0]  # AIINFRA_NO_CONTAINER=1
    assert "scancel --signal=TERM 4242.0" in lines, lines
    assert "step got TERM" in lines and "scontrol requeue 4242" in lines, lines
    assert "asking the ranks to checkpoint" in output


def test_scripts_are_valid_bash(dev_jobs, tmp_path):
    for path, text in dev_jobs.items():
        if path.endswith(".sh"):
            (tmp_path / "s.sh").write_text(text)
            subprocess.run(["bash", "-n", str(tmp_path / "s.sh")], check=True)


# ---------------------------------------------------------------- validation


def _problems(bp: dict) -> dict[str, Level]:
    try:
        loaded = build_data(bp, "dev.yaml", "dev")
    except BlueprintError as exc:
        return {p.id: p.level for p in exc.problems}
    return {p.id: p.level for p in loaded.warnings}


def _dev(changes: dict | None = None) -> dict:
    bp = copy.deepcopy(DEV)
    for (index, key), value in (changes or {}).items():
        if value is None:
            bp["training"][index].pop(key, None)
        else:
            bp["training"][index][key] = value
    return bp


@pytest.mark.parametrize(("changes", "expected"), [
    ({(1, "tp"): 2}, "train-deepspeed-layout"),
    ({(1, "precision"): "fp8"}, "train-deepspeed-fp8"),
    ({(0, "offload"): "cpu"}, "train-offload-needs-deepspeed"),
    ({(0, "image"): None, (1, "image"): None}, None),  # defaults: megatron and deepspeed are pinned
    ({(0, "extra_args"): ["--global-batch-size", "128"]}, "train-extra-arg-conflict"),
    ({(0, "checkpoint_dir"): "/scratch/ckpt"}, "train-checkpoint-outside-lustre"),
    ({(1, "checkpoint_dir"): "/scratch/ckpt"}, "train-checkpoint-not-mounted"),
    ({(0, "zero_stage"): 3}, "train-megatron-sharding"),  # the distributed optimizer is ZeRO stage 1
    ({(0, "fsdp"): True}, "train-megatron-sharding"),
    ({(1, "zero_stage"): 2}, None),  # DeepSpeed runs every stage
])
def test_validator_problems(changes, expected):
    found = _problems(_dev(changes))
    if expected is None:
        assert not [i for i in found if i.startswith("train-")], found
    else:
        assert found.get(expected) is PROBLEM_IDS[expected], found


def test_missing_image_and_storage():
    bp = _dev({(1, "image"): None})  # the default: versions.images.deepspeed
    del bp["versions"]["images"]["deepspeed"]
    assert _problems(bp) == {"train-image-missing": Level.ERROR}
    bp = _dev()
    del bp["storage"]
    found = _problems(bp)
    assert {"train-path-unset", "train-checkpoint-interval"} <= set(found), found


def test_the_tp_x_pp_x_dp_x_cp_and_batch_checks_are_the_planners():
    assert "plan-training" in _problems(_dev({(0, "tp"): 2, (0, "pp"): 2, (0, "dp"): 4}))
    assert "plan-training" in _problems(_dev({(1, "global_batch"): 63}))


def test_problem_ids_are_documented_and_classified():
    doc = (ROOT / "docs" / "validation.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.M))
    source = (ROOT / "src" / "aiinfra" / "checks" / "training.py").read_text()
    used = set(re.findall(r'"(train-[a-z0-9-]+)"', source))
    assert used == set(PROBLEM_IDS)
    assert used <= documented, sorted(used - documented)
    for pid, level in PROBLEM_IDS.items():
        assert pid in (registry.KNOWN_WARNINGS if level is Level.WARNING else registry.ERROR_IDS), pid


def test_committed_files_exist_for_every_job():
    for env in ("dev", "prod"):
        for m in load_stack(env).plan.jobs:
            name = "sbatch.sh" if m.scheduler == "slurm" else "pytorchjob.yaml"
            assert (ROOT / "manifests" / env / "jobs" / m.name / name).is_file() or pytest.skip("render first")
