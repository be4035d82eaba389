"""storage.parallel_fs: lustre | gpfs. Every consumer of the shared file system follows the choice.

The gpfs variant of dev (tests/gpfs_variant.py: tests/fixtures/gpfs/dev-gpfs.yaml applied to
stacks/Pulumi.dev.yaml) renders with the hosts mounting GPFS (inventory group and role variables),
jobs, checkpoints and serving pods on its mount, the node health check expecting a gpfs mount, and
Kubernetes volumes of GPFS; nothing of Lustre is left in the rendered tree. The checks refuse a gpfs
choice without what it needs.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from aiinfra.errors import BlueprintError, Level
from aiinfra.pipeline import build_file
from conftest import ROOT, render
from gpfs_variant import FIXTURE, build_gpfs_variant, gpfs_variant_raw

NODECHECK = (ROOT / "roles" / "slurm" / "files" / "aiinfra-nodecheck").read_text()


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    built = build_gpfs_variant(tmp_path_factory.mktemp("gpfs"))
    return built, render(built)


@pytest.fixture(scope="module")
def declared():
    return yaml.safe_load(FIXTURE.read_text())["storage"]["gpfs"]


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def _group_hosts(artifacts: dict[str, str]) -> dict[str, set[str]]:
    """Inventory group -> its hosts (children resolved), from the rendered static inventory (YAML or JSON)."""
    [path] = [p for p in artifacts if re.fullmatch(r"ansible/inventory\.(yml|json)", p)]
    children = yaml.safe_load(artifacts[path])["all"]["children"]

    def hosts(name: str) -> set[str]:
        group = children.get(name) or {}
        return set(group.get("hosts") or {}) | {h for child in group.get("children") or {} for h in hosts(child)}

    return {name: hosts(name) for name in children}


def test_hosts_of_the_lustre_client_role_mount_gpfs(variant, declared):
    built, artifacts = variant
    groups = _group_hosts(artifacts)
    assert "lustre_client" not in groups
    gpu_hosts = {h for g in built.cluster.groups.values() if g.gpus_per_node for h in g.hosts}
    assert groups["gpfs_client"] == gpu_hosts == {"gpu01", "gpu02"}
    storage = yaml.safe_load(artifacts["ansible/group_vars/all/storage.yml"])
    assert "aiinfra_lustre" not in storage
    assert storage["aiinfra_gpfs"] == {**{k: declared[k] for k in ("cluster_name", "admin_node", "fsname", "mountpoint")},
                                       "mount_options": []}
    site = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    assert {"hosts": "gpfs_client", "roles": [{"role": "gpfs_client"}]}.items() <= next(
        p for p in site if any(r["role"] == "gpfs_client" for r in p.get("roles") or [])).items()


def test_jobs_and_checkpoints_live_on_the_gpfs_mount(variant, declared):
    _, artifacts = variant
    mount = declared["mountpoint"]
    sbatch = artifacts["jobs/llama3-8b-smoke/sbatch.sh"]
    assert f"CONTAINER_MOUNTS={mount}:{mount}" in sbatch
    assert f"CHECKPOINT_DIR={mount}/checkpoints/dev/llama3-8b-smoke" in sbatch
    [config, job] = _docs(artifacts["jobs/llama3-8b-finetune/pytorchjob.yaml"])
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["gpfs"]["persistentVolumeClaim"] == {"claimName": "gpfs"}
    assert {"name": "gpfs", "mountPath": mount} in pod["containers"][0]["volumeMounts"]
    assert f"--save {mount}/checkpoints/dev/llama3-8b-finetune" in config["data"]["launch.sh"]


def test_serving_pods_read_weights_from_the_gpfs_claim(variant, declared):
    _, artifacts = variant
    [deployment] = [d for d in _docs(artifacts["k8s/serving/llama3-8b/deployment.yaml"]) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "gpfs", "persistentVolumeClaim": {"claimName": "gpfs", "readOnly": True}} in pod["volumes"]
    server = pod["containers"][0]
    assert {"name": "gpfs", "mountPath": declared["mountpoint"], "readOnly": True} in server["volumeMounts"]
    assert any(a.startswith(declared["mountpoint"] + "/models/") for a in server["args"])


def test_kubernetes_volumes_are_the_hosts_gpfs_mount(variant, declared):
    built, artifacts = variant
    assert "k8s/lustre/lustre.yaml" not in artifacts
    objects = _docs(artifacts["k8s/gpfs/gpfs.yaml"])
    pvs = [o for o in objects if o["kind"] == "PersistentVolume"]
    claims = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert {c["metadata"]["namespace"] for c in claims} == {"aiinfra-serving", "aiinfra-training"}
    assert {c["metadata"]["name"] for c in claims} == {"gpfs"}
    for pv in pvs:
        assert pv["spec"]["hostPath"] == {"path": declared["mountpoint"], "type": "Directory"}
        term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
        assert term == {"key": "aiinfra.io/gpfs", "operator": "In", "values": ["true"]}
        assert pv["spec"]["capacity"]["storage"] == str(built.cluster.blueprint.storage.gpfs.capacity)
    nodes = artifacts["k8s-hosts/nodes.yaml"]
    labelled = {line.split(":")[0] for line in nodes.splitlines() if '"aiinfra.io/gpfs": "true"' in line}
    assert labelled == {"gpu02"}  # the Kubernetes GPU node; gpu01 is Slurm's
    assert "gpfs" in yaml.safe_load(artifacts["k8s/kustomization.yaml"])["resources"]
    assert yaml.safe_load(artifacts["gitops/gpfs.yaml"].split("---", 1)[1])["spec"]["sources"][0]["path"] \
        == "manifests/dev/k8s/gpfs"


def test_node_health_check_expects_a_gpfs_mount(variant, declared, tmp_path):
    _, artifacts = variant
    expect = json.loads(artifacts["slurm/nodecheck.json"])
    [group] = expect["groups"]
    assert group["gpfs_mountpoint"] == declared["mountpoint"] and "lustre_mountpoint" not in group
    # the check itself: a gpfs mount there passes, a Lustre mount or none fails with its reason
    namespace: dict = {"__name__": "nodecheck"}
    exec(compile(NODECHECK, "aiinfra-nodecheck", "exec"), namespace)
    mounts = tmp_path / "mounts"
    probes = {"mounts_file": str(mounts)}
    mounts.write_text(f"{declared['fsname']} {declared['mountpoint']} gpfs rw,relatime 0 0\n")
    assert namespace["lustre_problems"](group, probes) == []
    mounts.write_text(f"10.12.0.250@o2ib:/devfs {declared['mountpoint']} lustre rw 0 0\n")
    assert namespace["lustre_problems"](group, probes) == [f"GPFS not mounted at {declared['mountpoint']}"]


def _text_without_the_check_program(path: str, text: str) -> str:
    """The node health ConfigMap carries the check program (the same for every blueprint; it reads the
    mount to expect from nodecheck.json) beside the data: only the data is the blueprint's."""
    if path != "k8s/node-health/configmap.yaml":
        return text
    assert NODECHECK.strip() in "\n".join(line.removeprefix("    ") for line in text.splitlines())
    docs = _docs(text)
    data = [v for d in docs for v in (d.get("data") or {}).values() if v.strip() != NODECHECK.strip()]
    assert len(data) < sum(len(d.get("data") or {}) for d in docs)  # the program was there and is left out
    return "\n".join(data)


def test_nothing_of_lustre_is_left_in_the_gpfs_render(variant):
    _, artifacts = variant
    left = sorted({path for path, text in artifacts.items()
                   if re.search("lustre", _text_without_the_check_program(path, text), re.I)})
    assert left == []


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_lustre_environments_name_no_gpfs(env, request):
    artifacts = render(request.getfixturevalue(env))
    left = sorted({path for path, text in artifacts.items()
                   if re.search("gpfs", _text_without_the_check_program(path, text), re.I)})
    assert left == []
    assert any(re.search(r"aiinfra_lustre:", t) for p, t in artifacts.items() if p.endswith("storage.yml"))


# ------------------------------------------------------------------ checks


def _problems(raw: dict, tmp_path) -> list:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        built = build_file(path, "Pulumi.dev.yaml")
    except BlueprintError as exc:
        return list(exc.problems)
    return list(built.warnings)


def _edit(change) -> dict:
    raw = copy.deepcopy(gpfs_variant_raw())
    change(raw["config"]["aiinfra:cluster"])
    return raw


@pytest.mark.parametrize(("change", "id", "path"), [
    (lambda bp: bp["storage"].pop("gpfs"), "missing-section", ("storage", "gpfs")),
    (lambda bp: bp["versions"].pop("gpfs"), "missing-version", ("versions", "gpfs")),
    (lambda bp: bp["node_groups"][1].update(roles=["lustre_client"]), "storage-client-role-mismatch",
     ("node_groups", 1, "roles", 0)),
    (lambda bp: bp["kubernetes"].update(lustre_volumes="csi", lustre_csi_driver="lustre.csi.example.org"),
     "k8s-gpfs-volumes-static", ("kubernetes", "lustre_volumes")),
], ids=["no-declaration", "no-version", "lustre-role", "csi"])
def test_a_gpfs_choice_without_what_it_needs_is_refused(tmp_path, change, id, path):
    problems = _problems(_edit(change), tmp_path)
    hit = [p for p in problems if p.id == id]
    assert hit and hit[0].level is Level.ERROR and tuple(hit[0].path) == path, problems
    assert hit[0].hint


def test_a_declaration_the_choice_leaves_unused_is_a_warning(tmp_path):
    def also_lustre(bp):
        bp["storage"]["lustre"] = {"fsname": "devfs", "mgs_nids": ["10.12.0.250@o2ib"], "capacity": "500TB",
                                   "bandwidth": "20GB/s"}
    problems = _problems(_edit(also_lustre), tmp_path)
    assert [(p.id, p.level, tuple(p.path)) for p in problems if p.id == "storage-parallel-fs-unused"] == [
        ("storage-parallel-fs-unused", Level.WARNING, ("storage", "lustre"))]


def test_gpfs_client_role_under_lustre_is_refused(tmp_path):
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    raw["config"]["aiinfra:cluster"]["node_groups"][2]["roles"] = ["gpfs_client"]
    problems = _problems(raw, tmp_path)
    assert [(p.id, tuple(p.path)) for p in problems if p.level is Level.ERROR] == [
        ("storage-client-role-mismatch", ("node_groups", 2, "roles", 0))]


def test_platform_components_follow_the_choice(variant):
    from aiinfra.catalog.platform import components
    from aiinfra.deploy.serving_component import platform_dependencies

    assert "gpfs" in [c.name for c in components("gpfs")] and "lustre" not in [c.name for c in components("gpfs")]
    _, artifacts = variant
    folders = {p.split("/")[1] for p in artifacts if p.startswith("k8s/") and p.count("/") >= 2}
    assert "gpfs" in folders and "lustre" not in folders
    # a serving Deployment waits for the GPFS volumes, and only them
    present, absent = platform_dependencies([{"kind": "Deployment"}], {"gpfs": object()}, "gpfs")
    assert present == ["gpfs"] and "lustre" not in absent
