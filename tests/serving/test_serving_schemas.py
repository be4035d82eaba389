"""Serving objects validate, strictly, against the Kubernetes schemas and the LWS / KEDA /
Prometheus Operator CRDs (tests/k8s_schema.py) - both what is committed and the variants that
prod does not use (Ray groups, HPA)."""

from __future__ import annotations

import pytest
from serving_helpers import load_variant, serving_objects, stack_data, warm_crd_index

from conftest import ROOT, load_stack
from k8s_schema import objects_in, require_crds, validate_object


@pytest.fixture(scope="module", autouse=True)
def crds():
    pytest.importorskip("kubernetes_validate")
    require_crds()
    warm_crd_index()


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_committed_serving_objects_are_valid(env):
    version = load_stack(env).cluster.blueprint.versions.kubernetes
    objects = objects_in(ROOT / "manifests" / env / "k8s" / "serving")
    assert objects
    problems = [p for _, obj in objects for p in validate_object(obj, version)]
    assert not problems, "\n".join(problems[:20])


def test_every_kind_serving_renders_is_covered():
    kinds = {o["kind"] for objs in serving_objects(load_stack("prod")).values() for o in objs}
    assert {"Deployment", "LeaderWorkerSet", "Job", "Service", "ServiceAccount", "PodDisruptionBudget",
            "NetworkPolicy", "ServiceMonitor", "PrometheusRule", "ScaledObject"} <= kinds


def test_ray_groups_and_hpa_are_valid_too():
    data = stack_data("prod")
    data["serving"][1].update({"distributed_backend": "ray", "image": "vllm", "autoscaling": "hpa",
                               "max_replicas": 2})
    objs = serving_objects(load_variant(data))["llama3-405b"]
    kinds = {o["kind"] for o in objs}
    assert "HorizontalPodAutoscaler" in kinds and "LeaderWorkerSet" in kinds
    problems = [p for obj in objs for p in validate_object(obj, data["versions"]["kubernetes"])]
    assert not problems, "\n".join(problems)
