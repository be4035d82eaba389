"""`aiinfra validate` is the whole gate: what a renderer could not render is refused by the checks,
with an id and the key path, before anything is rendered."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data
from conftest import ROOT


def blueprint(env: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())["config"]["aiinfra:cluster"]


def without_api_vip(bp: dict) -> None:
    del bp["kubernetes"]["api_vip"]  # prod has three control-plane hosts


def queue_shares_above_one(bp: dict) -> None:
    bp["kubernetes"]["queue_gpu_shares"] = {"serving": 0.8, "training": 0.5}


def host_index_in_the_pod_half_of_a_rail_subnet(bp: dict) -> None:
    # dev's rail subnets are /24: pods take .128-.255, so gpu02 at index 200 would share them
    group = next(g for g in bp["node_groups"] if g["name"] == "gpu-serve")
    group["address_index"] = 200


def slurm_latest(bp: dict) -> None:
    bp["versions"]["slurm"] = "latest"


def kubernetes_latest(bp: dict) -> None:
    bp["versions"]["kubernetes"] = "latest"


def kubernetes_major_only(bp: dict) -> None:
    bp["versions"]["kubernetes"] = "1"  # kubeadm's API version depends on the minor


def lustre_csi_without_driver(bp: dict) -> None:
    bp["kubernetes"]["lustre_volumes"] = "csi"


CASES: dict[str, tuple[str, Callable[[dict], None], str, tuple]] = {
    "control-plane-hosts-without-api-vip": (
        "prod", without_api_vip, "k8s-api-vip-missing", ("kubernetes", "api_vip")),
    "queue-gpu-shares-above-one": (
        "dev", queue_shares_above_one, "k8s-queue-shares-over-one", ("kubernetes", "queue_gpu_shares")),
    "rail-pod-range-at-large-host-index": (
        "dev", host_index_in_the_pod_half_of_a_rail_subnet, "ipoib-pod-range-too-small",
        ("networks", "ipoib", "rail_prefix")),
    "slurm-version-latest": ("dev", slurm_latest, "bad-version", ("versions", "slurm")),
    "kubernetes-version-latest": ("dev", kubernetes_latest, "bad-version", ("versions", "kubernetes")),
    "kubernetes-version-without-minor": ("dev", kubernetes_major_only, "bad-version", ("versions", "kubernetes")),
    "lustre-csi-without-driver": (
        "dev", lustre_csi_without_driver, "k8s-lustre-csi-driver-missing", ("kubernetes", "lustre_csi_driver")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_refuses_what_render_could_not_render(case):
    env, change, problem_id, path = CASES[case]
    bp = blueprint(env)
    change(bp)
    with pytest.raises(BlueprintError) as exc:
        build_data(bp, f"{env}.yaml", env)
    found = {(p.id, p.path) for p in exc.value.problems}
    assert (problem_id, path) in found, found
    (problem,) = [p for p in exc.value.problems if p.id == problem_id]
    assert problem.hint, "every refusal says how to fix it"


def test_the_pod_half_only_matters_with_kubernetes():
    bp = blueprint("dev")
    host_index_in_the_pod_half_of_a_rail_subnet(bp)
    serve = next(g for g in bp["node_groups"] if g["name"] == "gpu-serve")
    serve["scheduler"] = "slurm"  # no Kubernetes group: no pods on the rails
    bp["slurm"]["partitions"][0]["node_groups"].append("gpu-serve")
    bp["training"] = [j for j in bp["training"] if j["node_group"] != "gpu-serve"]
    bp["serving"] = []
    build_data(bp, "dev.yaml", "dev")


@pytest.mark.parametrize(("key", "release"), [("slurm", "24.11.5"), ("slurm", "24.05"),
                                              ("kubernetes", "v1.31.7"), ("kubernetes", "1.30.9")])
def test_releases_are_accepted(key, release):
    bp = blueprint("dev")
    bp["versions"][key] = release
    if key == "slurm" and release == "24.05":  # a series: packages from a site repository, not a source build
        bp["slurm"]["install"] = {"method": "packages"}
    if key == "kubernetes" and release.startswith("1.30"):  # kubeadm 1.30 pulls pause:3.9 (PauseVersion)
        bp["versions"]["images"]["pause"] = "registry.k8s.io/pause:3.9"
    build_data(bp, "dev.yaml", "dev")


def test_a_source_build_of_an_unlisted_slurm_release_needs_its_tarball():
    bp = blueprint("dev")
    bp["versions"]["slurm"] = "24.11.4"
    with pytest.raises(BlueprintError) as refused:
        build_data(bp, "dev.yaml", "dev")
    assert [p.key_path for p in refused.value.problems if p.id == "slurm-source-unknown"] == ["aiinfra:cluster.slurm.install"]
    bp["slurm"]["install"] = {"source_url": "https://mirror.site.local/slurm/slurm-24.11.4.tar.bz2",
                              "source_sha256": "0" * 64}
    build_data(bp, "dev.yaml", "dev")
