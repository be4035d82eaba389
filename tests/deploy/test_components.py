"""Policies of the Kubernetes platform's Pulumi components, under Pulumi's mocks."""

from __future__ import annotations

import copy

import pytest
import yaml
from pulumi_harness import run_program

from aiinfra.catalog.charts import chart
from aiinfra.catalog.platform import COMPONENTS, components
from conftest import ROOT


def stack_blueprint(env: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())["config"]["aiinfra:cluster"]


@pytest.fixture(scope="module")
def prod_run():
    return run_program("prod", stack_blueprint("prod"))


def test_one_component_per_platform_component_with_its_type_token(prod_run):
    tokens = sorted(r.type for r in prod_run.of_type("aiinfra:k8s:"))
    assert tokens == sorted(c.type_token for c in components())  # prod: Lustre's storage component


def test_every_kubernetes_resource_is_a_child_of_a_component(prod_run):
    urns = prod_run.by_urn()
    for r in prod_run.of_type("kubernetes:"):
        parent = urns.get(r.parent)
        assert parent is not None and parent.type.startswith(("aiinfra:k8s:", "aiinfra:serving:")), r.name


def test_every_chart_is_a_release_at_the_pinned_version(prod_run):
    pinned = stack_blueprint("prod")["versions"]["charts"]
    releases = prod_run.of_type("kubernetes:helm.sh/v3:Release")
    assert len(releases) == sum(1 for c in COMPONENTS if c.chart and not chart(c.chart).is_kustomize)
    for r in releases:
        assert r.inputs.get("version"), f"{r.name}: unpinned chart"
        assert r.inputs["version"] in pinned.values()
        assert r.inputs["name"] and r.inputs["values"], r.name  # release name shared with Argo CD, values rendered


def test_custom_resources_wait_for_the_chart_that_brings_their_operator(prod_run):
    urns = prod_run.by_urn()
    releases = {r.parent: r.urn for r in prod_run.of_type("kubernetes:helm.sh/v3:Release")}
    checked = 0
    for group in prod_run.of_type("kubernetes:yaml/v2:ConfigGroup"):
        kinds = {o["kind"] for o in group.inputs.get("objs", [])}
        custom = {k for o in group.inputs.get("objs", []) if "." in o["apiVersion"].split("/")[0]
                  and not o["apiVersion"].startswith(("networking.k8s.io", "rbac.", "policy", "apps"))
                  for k in [o["kind"]]}
        if group.parent in releases:
            assert releases[group.parent] in group.dependencies, f"{group.name} ({sorted(kinds)}) before its chart"
            checked += bool(custom)
        else:
            assert not custom or urns[group.parent].type.startswith("aiinfra:serving:"), group.name
    assert checked >= 3  # monitoring, network operator, kueue


def waits_for(run, registration, component_urn: str) -> bool:
    """Does ``registration`` depend on the component (Pulumi expands a component to its children)?"""
    urns = run.by_urn()

    def inside(urn: str) -> bool:
        while urn:
            if urn == component_urn:
                return True
            urn = urns[urn].parent if urn in urns else ""
        return False

    return any(inside(d) for d in registration.dependencies)


def test_components_wait_for_the_components_they_need(prod_run):
    by_name = {r.name: r for r in prod_run.of_type("aiinfra:k8s:")}
    for spec in components():
        for child in [r for r in prod_run.registrations if r.parent == by_name[spec.name].urn]:
            for need in spec.after:
                assert waits_for(prod_run, child, by_name[need].urn), f"{child.name} does not wait for {need}"


def test_every_workload_namespace_has_a_default_deny_policy(prod_run):
    (group,) = [r for r in prod_run.of_type("kubernetes:yaml/v2:ConfigGroup") if r.name == "namespaces-objects"]
    objs = group.inputs["objs"]
    workload = [o["metadata"]["name"] for o in objs
                if o["kind"] == "Namespace" and o["metadata"]["labels"]["aiinfra.io/purpose"] == "workload"]
    assert workload
    for ns in workload:
        assert any(o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == ns and o["spec"]["podSelector"] == {}
                   and set(o["spec"]["policyTypes"]) == {"Ingress", "Egress"}
                   and "ingress" not in o["spec"] and "egress" not in o["spec"] for o in objs), ns


def test_serving_deployments_wait_for_the_platform(prod_run):
    (gpu_operator,) = [r for r in prod_run.of_type("aiinfra:k8s:GpuOperator")]
    serving = prod_run.of_type("aiinfra:serving:")
    assert serving
    for child in [r for r in prod_run.registrations if r.parent in {s.urn for s in serving}]:
        assert waits_for(prod_run, child, gpu_operator.urn), child.name


def _resized(train_nodes: int, serve_nodes: int) -> dict:
    bp = copy.deepcopy(stack_blueprint("prod"))
    bp["training"], bp["claims"] = [], []
    groups = {g["name"]: g for g in bp["node_groups"]}
    groups["gpu-train"]["hosts"] = f"gpu[001-{train_nodes:03d}]"
    groups["gpu-serve"]["hosts"] = f"gpu[{train_nodes + 1:03d}-{train_nodes + serve_nodes:03d}]"
    bp["nodes"] = {}  # gpu200's day-2 state: not a host of the small variant
    return bp  # addresses follow the names: gpu-serve shares gpu-train's numbering


def test_the_resource_count_does_not_grow_with_the_nodes():
    small = run_program("prod", _resized(32, 32))  # 64 GPU nodes
    large = run_program("prod", _resized(256, 256))  # 512 GPU nodes, 8x the Kubernetes nodes
    count = len(small.registrations)
    assert count == len(large.registrations)
    assert sorted(r.type for r in small.registrations) == sorted(r.type for r in large.registrations)
    assert count < 60, count


def test_a_kubeconfig_secret_selects_an_explicit_provider():
    run = run_program("dev", stack_blueprint("dev"), {"aiinfra:kubeconfig": "apiVersion: v1\nkind: Config\n"})
    assert [r.name for r in run.of_type("pulumi:providers:kubernetes")] == ["kubernetes"]


def test_the_training_operator_is_its_kustomize_overlay_at_the_pinned_tag(prod_run):
    """No chart exists for it: a kustomize Directory of the project's folder at versions.charts' tag."""
    (component,) = prod_run.of_type("aiinfra:k8s:TrainingOperator")
    (directory,) = [r for r in prod_run.of_type("kubernetes:kustomize/v2:Directory") if r.parent == component.urn]
    tag = stack_blueprint("prod")["versions"]["charts"]["training-operator"]
    assert directory.inputs["directory"].endswith(f"/tree/{tag}/manifests/overlays/standalone")
    assert directory.inputs["directory"].startswith("https://github.com/kubeflow/")
