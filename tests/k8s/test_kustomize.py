"""Every rendered Kubernetes folder builds with kustomize (a real kubectl, offline)."""

from __future__ import annotations

import pytest
import yaml
from kubectl_tool import kustomize

from conftest import ROOT
from k8s_schema import objects_in


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_kubernetes_tree_builds_and_holds_every_listed_object(env):
    tree = ROOT / "manifests" / env / "k8s"
    built = [d for d in yaml.safe_load_all(kustomize(tree)) if d]  # the root lists every component folder
    ids = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in built}
    listed = []
    for kustomization in tree.glob("*/kustomization.yaml"):
        for name in yaml.safe_load(kustomization.read_text()).get("resources") or []:
            path = kustomization.parent / name
            if path.is_file():
                listed += [o for p, o in objects_in(path.parent) if p == path]
    assert listed
    missing = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in listed} - ids
    assert not missing, missing


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_gitops_tree_builds(env):
    built = [d for d in yaml.safe_load_all(kustomize(ROOT / "manifests" / env / "gitops")) if d]
    assert {d["kind"] for d in built} == {"AppProject", "Application"}
