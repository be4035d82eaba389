"""Every Kubernetes object in manifests/<env>/ validates against the official schemas, strictly."""

from __future__ import annotations

import pytest

from conftest import ROOT, load_stack
from k8s_schema import objects_in, validate_object


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_rendered_object_is_valid(env):
    pytest.importorskip("kubernetes_validate")
    version = load_stack(env).cluster.blueprint.versions.kubernetes
    objects = [o for tree in ("k8s", "gitops", "jobs") for o in objects_in(ROOT / "manifests" / env / tree)]
    assert objects, "no Kubernetes objects rendered"
    problems = [p for path, obj in objects for p in validate_object(obj, version)]
    assert not problems, "\n".join(problems[:20])


def test_the_validator_rejects_an_unknown_field():
    pytest.importorskip("kubernetes_validate")
    bad = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "spek": {}}
    assert validate_object(bad, "1.31.7")
