"""`aiinfra artifacts` against what the rendered files name, and the blueprint's mirror: setting.

The artifacts are computed from the Cluster and the plan; these tests read the RENDERED files
(every image field of every YAML object, the NicClusterPolicy's repository/image/version triples,
the job scripts' container images, every chart and git source of the Argo CD Applications, the
values headers and the CNI chart) and compare the sets, with and without a mirror."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data
from aiinfra.render.inventory import INVENTORY_FILE
from conftest import ROOT, load_stack, render

MIRROR = {"registry": "registry.site.local:5000", "helm": "oci://registry.site.local/charts",
          "git": "https://git.site.local/mirror"}


def _prod_raw() -> dict:
    return yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"]["aiinfra:cluster"]


@pytest.fixture(scope="module")
def mirrored():
    return build_data({**_prod_raw(), "mirror": MIRROR}, "stacks/Pulumi.prod.yaml", "prod")


def _walk(node, found: dict[str, set]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("image"), str):
            if {"repository", "version"} <= node.keys():  # NicClusterPolicy: repository/image:version
                found["images"].add(f"{node['repository']}/{node['image']}:{node['version']}")
            else:
                found["images"].add(node["image"])
        if node.get("kind") == "Application":
            for src in node["spec"].get("sources", [node["spec"].get("source", {})]):
                if "chart" in src:
                    found["charts"].add((src["chart"], src["targetRevision"], src["repoURL"]))
                elif src.get("path", "").startswith("manifests/overlays"):
                    found["git"].add((src["repoURL"], src["targetRevision"]))
        for v in node.values():
            _walk(v, found)
    elif isinstance(node, list):
        for v in node:
            _walk(v, found)


def rendered_names(files: dict[str, str]) -> dict[str, set]:
    """Every image, chart and git source the rendered files name."""
    found: dict[str, set] = {"images": set(), "charts": set(), "headers": set(), "git": set()}
    for path, text in files.items():
        if path.endswith((".yaml", ".yml")):
            for doc in yaml.safe_load_all(text):
                _walk(doc, found)
            m = re.search(r"^# helm upgrade --install (.*) -f values.yaml$", text, re.M)
            if m:
                words = shlex.split(m[1])
                repo = words[words.index("--repo") + 1] if "--repo" in words else ""
                found["headers"].add((words[1], words[words.index("--version") + 1], repo))
        if path == "k8s-hosts/cluster.yml":
            cni = yaml.safe_load(text)["cni"]
            found["headers"].add((cni["chart"], cni["version"], cni["repository"]))
            found["images"].add(yaml.safe_load(text)["sandbox_image"])  # containerd's pause (playbooks/kubernetes.yml)
        if path == INVENTORY_FILE:  # what the nccl_tests and megatron_lm roles check out
            software = json.loads(text)["all"]["vars"].get("aiinfra_job_software", {})
            found["git"] |= {(c["repository"], c["tag"]) for c in software.values()}
        for m in re.finditer(r"^CONTAINER_IMAGE=(\S+)", text, re.M):  # pyxis: registry#path
            found["images"].add(shlex.split(m[1])[0].replace("#", "/", 1))
    return found


def _listed(built, *args: str) -> list[dict]:
    from aiinfra.plan.artifacts import stack_artifacts

    return [a.to_dict() for a in stack_artifacts(built.cluster, built.plan)]


def _full_name(ref: str) -> str:
    """Docker's normalization: ``python:3`` is ``docker.io/library/python:3``."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first):
        return ref
    return "docker.io/" + (ref if sep else "library/" + ref)


def _argocd(repo: str) -> str:
    return repo.removeprefix("oci://")


def _helm_ref(chart: str, repo: str) -> tuple[str, str]:
    """What a values header says: ``helm upgrade ... <ref> [--repo <repo>]``."""
    return (f"{repo}/{chart}", "") if repo.startswith("oci://") else (chart, repo)


@pytest.mark.parametrize("mirror", [False, True], ids=["upstream", "mirror"])
def test_artifacts_list_every_image_and_chart_the_rendered_files_name(mirror, mirrored):
    built = mirrored if mirror else load_stack("prod")
    found = rendered_names(render(built))
    listed = _listed(built)
    images = {a["site"] for a in listed if a["kind"] == "image"}
    charts = [a for a in listed if a["kind"] == "chart"]
    assert found["images"] == images
    apps = {(c, v) for c, v, _ in found["charts"]}
    cni = built.cluster.blueprint.kubernetes.cni
    assert apps == {(a["name"], a["version"]) for a in charts if "CNI" not in a["used_by"]}, cni
    assert {r for _, _, r in found["charts"]} == {_argocd(a["site"]) for a in charts if "CNI" not in a["used_by"]}
    assert found["headers"] == {(*_helm_ref(a["name"], a["site"])[:1], a["version"], _helm_ref(a["name"], a["site"])[1])
                                for a in charts}
    assert found["git"] == {(a["site"], a["version"]) for a in listed if a["kind"] == "git"}


def test_the_mirror_changes_every_image_chart_and_git_source(mirrored):
    up = rendered_names(render(load_stack("prod")))
    site = rendered_names(render(mirrored))
    assert up["images"] and all(not i.startswith(MIRROR["registry"]) for i in up["images"])
    assert all(i.startswith(MIRROR["registry"] + "/") for i in site["images"])
    assert {i.split("/", 1)[1] for i in site["images"]} == {_full_name(i) for i in up["images"]}
    assert {r for _, _, r in site["charts"]} == {_argocd(MIRROR["helm"])}
    assert all(ref.startswith(MIRROR["helm"] + "/") and not repo for ref, _, repo in site["headers"])
    assert {u for u, _ in site["git"]} == {f"{MIRROR['git']}/{u.split('://')[1]}" for u, _ in up["git"]}
    # the AppProject admits the mirror, and no rendered file names an upstream registry any more
    files = render(mirrored)
    project = yaml.safe_load_all(files["gitops/project.yaml"])
    repos = next(d for d in project if d)["spec"]["sourceRepos"]
    assert _argocd(MIRROR["helm"]) in repos
    for path, text in files.items():
        if path in (INVENTORY_FILE, "cluster.json"):
            continue  # the record of the blueprint's pins (aiinfra_versions, versions): no role pulls from it
        for upstream in ("nvcr.io/", "helm.ngc.nvidia.com", "registry.k8s.io/", "argoproj.github.io",
                         "github.com/kubeflow", "docs.tigera.io", "vllm/vllm-openai:"):
            hits = [line for line in text.splitlines() if upstream in line
                    and f"/{upstream}" not in line and not line.lstrip().startswith("#")]
            assert not hits, (path, hits[:2])


def test_mirror_script_copies_every_artifact_to_its_site_name(mirrored, aiinfra, tmp_path):
    from aiinfra.plan.artifacts import mirror_script, stack_artifacts

    arts = stack_artifacts(mirrored.cluster, mirrored.plan)
    text = mirror_script(mirrored.cluster, arts)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh" and "set -eu" in lines
    copies = {tuple(w.removeprefix("docker://") for w in shlex.split(line)[3:])
              for line in lines if line.startswith("skopeo copy")}
    assert copies == {(a.source, a.site) for a in arts if a.kind == "image"}
    pulls = {shlex.split(line)[2] for line in lines if line.startswith("helm pull")}
    assert pulls == {f"{a.source}/{a.name}" if a.source.startswith("oci://") else a.name
                     for a in arts if a.kind == "chart"}
    assert any(f"helm push \"$chart\" {MIRROR['helm']}" in line for line in lines)
    assert any(line.startswith("git -C") and line.endswith(a.site) for a in arts if a.kind == "git"
               for line in lines)
    block = text.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0].splitlines()
    assert [line.split("\t")[0].split("=")[0] for line in block] == [a.name for a in arts if a.kind == "package"]
    # the script is the CLI's output, byte for byte, and the same twice
    f = tmp_path / "b.yaml"
    f.write_text(yaml.safe_dump({"config": {"aiinfra:cluster": {**_prod_raw(), "mirror": MIRROR}}}))
    first = aiinfra("artifacts", "-f", str(f), "--mirror-script")
    assert first.code == 0 and first.stdout.splitlines()[3:] == lines[3:]
    assert aiinfra("artifacts", "-f", str(f), "--mirror-script").stdout == first.stdout


def test_artifacts_json_lists_packages_and_models(aiinfra):
    res = aiinfra("artifacts", "--stack", "prod", "--json")
    assert res.code == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["mirror"] is None
    kinds = {a["kind"] for a in data["artifacts"]}
    assert kinds == {"image", "chart", "git", "package", "model"}
    bp = load_stack("prod").cluster.blueprint
    models = {a["name"] for a in data["artifacts"] if a["kind"] == "model"}
    assert {s.weights_path for s in bp.serving if s.weights_path} <= models
    assert {j.tokenizer for j in bp.training if j.tokenizer} <= models
    pkgs = {a["name"]: a["version"] for a in data["artifacts"] if a["kind"] == "package"}
    assert pkgs["doca-ofed"] == bp.versions.doca_ofed
    assert pkgs["kubelet"] == bp.versions.kubernetes
    # without a mirror, every artifact is pulled from its upstream
    assert all(a["site"] == a["source"] for a in data["artifacts"])


def test_package_names_are_the_roles_own():
    """The OS package list names what the roles install: each name is in its role's files."""
    from aiinfra.plan.artifacts import stack_artifacts

    built = load_stack("prod")
    for a in stack_artifacts(built.cluster, built.plan):
        if a.kind != "package":
            continue
        role = a.used_by.removeprefix("role ")
        text = "".join(p.read_text() for p in (ROOT / "roles" / role).glob("*/*.yml"))
        stem = re.split(r"-\d|-5\.", a.name)[0]  # versioned names: nvidia-driver-570-open, lustre-client-modules-<kernel>
        assert stem in text, (role, a.name)


@pytest.mark.parametrize(("key", "value"), [("registry", "https://registry.site.local"),
                                            ("helm", "registry.site.local/charts"),
                                            ("git", "ftp://git.site.local"), ("proxy", "x")])
def test_a_bad_mirror_is_a_problem_with_its_key_path(key, value):
    with pytest.raises(BlueprintError) as exc:
        build_data({**_prod_raw(), "mirror": {key: value}}, "stacks/Pulumi.prod.yaml", "prod")
    paths = [p.key_path for p in exc.value.problems]
    assert any(f"mirror.{key}" in p for p in paths), paths


def test_kubeadm_pulls_its_control_plane_images_from_the_mirror(mirrored):
    """kubeadm's own images (kube-apiserver ..., etcd, CoreDNS) come from imageRepository; with a
    mirror every control-plane image is pulled from the site registry under its upstream name."""
    from aiinfra.render.k8s_hosts import kubeadm_documents

    (mirror_cfg,) = [d for d in kubeadm_documents(mirrored.cluster) if d["kind"] == "ClusterConfiguration"]
    assert mirror_cfg["imageRepository"] == f"{MIRROR['registry']}/registry.k8s.io"
    assert mirror_cfg["dns"]["imageRepository"] == f"{MIRROR['registry']}/registry.k8s.io/coredns"
    (upstream,) = [d for d in kubeadm_documents(load_stack("prod").cluster) if d["kind"] == "ClusterConfiguration"]
    assert "imageRepository" not in upstream and "dns" not in upstream  # kubeadm's defaults
