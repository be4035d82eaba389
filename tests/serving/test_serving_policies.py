"""Policies every rendered serving object holds (Zero-Trust defaults), over all of manifests/."""

from __future__ import annotations

import re
from functools import cache

import pytest

from aiinfra.catalog.k8s_resources import GPU_RESOURCE
from conftest import ROOT
from k8s_schema import objects_in

ENVS = ("dev", "prod")


@cache
def all_objects() -> list[tuple[str, dict]]:
    return [(str(p.relative_to(ROOT)), o) for env in ENVS for p, o in objects_in(ROOT / "manifests" / env)]


@cache
def serving_objects() -> list[dict]:
    return [o for env in ENVS for _, o in objects_in(ROOT / "manifests" / env / "k8s" / "serving")]


def pod_specs(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    if obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return [spec["template"]["spec"]]
    if obj["kind"] == "LeaderWorkerSet":
        t = spec["leaderWorkerTemplate"]
        return [t["leaderTemplate"]["spec"], t["workerTemplate"]["spec"]]
    return []


def test_no_load_balancer_service_without_authentication():
    for path, obj in all_objects():
        if obj["kind"] == "Service" and obj["spec"].get("type") == "LoadBalancer":
            ann = obj["metadata"].get("annotations", {})
            assert any("auth" in k for k in ann), f"{path}: LoadBalancer {obj['metadata']['name']} without auth"
    assert all(o["spec"]["type"] == "ClusterIP" for o in serving_objects() if o["kind"] == "Service")


def test_api_keys_only_by_reference():
    for obj in serving_objects():
        for pod in pod_specs(obj):
            for c in pod["containers"] + pod.get("initContainers", []):
                for e in c.get("env", []):
                    if "KEY" in e["name"] or "TOKEN" in e["name"] or "SECRET" in e["name"]:
                        assert "value" not in e and "secretKeyRef" in e["valueFrom"], e
                assert "--api-key" not in (c.get("args") or []) + c["command"]


def test_no_literal_secret_anywhere_in_manifests():
    pattern = re.compile(r"(api[-_]?key|token|password)[ \t]*[:=][ \t]*['\"]?[A-Za-z0-9+/_-]{16,}", re.I)
    for path in ROOT.glob("manifests/**/*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "kind: Secret\n" not in text, f"{path}: a Secret object is rendered"
            hit = pattern.search(text)
            assert hit is None or "secretKeyRef" in text[max(0, hit.start() - 200):hit.end()], f"{path}: {hit}"


def test_every_serving_pod_requests_whole_gpus():
    pods = [p for o in serving_objects() for p in pod_specs(o)]
    assert pods
    for pod in pods:
        for c in pod["containers"]:
            limits, requests = c["resources"]["limits"], c["resources"]["requests"]
            gpus = limits.get(GPU_RESOURCE)
            assert isinstance(gpus, int) and gpus >= 1, c["name"]
            assert requests[GPU_RESOURCE] == gpus


@pytest.mark.parametrize("check", ["non-root", "read-only-root", "no-token", "no-escalation"])
def test_pods_run_locked_down(check):
    for obj in serving_objects():
        for pod in pod_specs(obj):
            containers = pod["containers"] + pod.get("initContainers", [])
            if check == "non-root":
                assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
            elif check == "read-only-root":
                assert all(c["securityContext"]["readOnlyRootFilesystem"] for c in containers)
            elif check == "no-token":
                assert pod["automountServiceAccountToken"] is False
            else:
                assert all(c["securityContext"]["allowPrivilegeEscalation"] is False and
                           c["securityContext"]["capabilities"]["drop"] == ["ALL"] for c in containers)


def test_network_policies_admit_only_the_gateway_and_monitoring():
    policies = [o for o in serving_objects() if o["kind"] == "NetworkPolicy"]
    assert policies
    for np in policies:
        spec = np["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        sources = {f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                   for rule in spec["ingress"] for f in rule["from"] if "namespaceSelector" in f}
        assert sources <= {"inference-gateway", "monitoring"}, sources
        for rule in spec["egress"]:
            for peer in rule["to"]:
                assert "ipBlock" not in peer or peer["ipBlock"]["cidr"] != "0.0.0.0/0"
        assert all("podSelector" in p or "namespaceSelector" in p or "ipBlock" in p
                   for rule in spec["egress"] for p in rule["to"])
