"""Kueue admits what aiinfra renders: every workload names a LocalQueue that exists in its namespace,
Kueue manages its kind (the chart's integrations as we configure them), and every resource its pods
request is covered by that queue's ClusterQueue or excluded from quota (BlockUndeclared otherwise
keeps the workload pending forever: kueue v0.19.2 apis/config/v1beta2/configuration_types.go)."""

from __future__ import annotations

import pytest
import yaml

from conftest import load_stack, render

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Kueue's integration name of each kind (kueue v0.19.2 charts/kueue/values.yaml, integrations.frameworks)
FRAMEWORK = {"Deployment": "deployment", "LeaderWorkerSet": "leaderworkerset.x-k8s.io/leaderworkerset",
             "Job": "batch/job", "PyTorchJob": "kubeflow.org/pytorchjob", "StatefulSet": "statefulset"}


def _docs(tree: dict[str, str], prefix: str) -> list[dict]:
    return [d for path, text in sorted(tree.items()) if path.startswith(prefix) and path.endswith(".yaml")
            for d in yaml.safe_load_all(text) if isinstance(d, dict) and "kind" in d and "metadata" in d]


def _pod_specs(obj: dict) -> list[dict]:
    spec = obj["spec"]
    templates = [spec.get("template"), *spec.get("leaderWorkerTemplate", {}).values(),
                 *(r.get("template") for r in spec.get("pytorchReplicaSpecs", {}).values())]
    return [t["spec"] for t in templates if isinstance(t, dict) and "spec" in t]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_queued_workload_can_be_admitted(env):
    tree = render(load_stack(env))
    kueue = _docs(tree, "k8s/kueue/")
    local = {(q["metadata"]["namespace"], q["metadata"]["name"]): q["spec"]["clusterQueue"]
             for q in kueue if q["kind"] == "LocalQueue"}
    covered = {q["metadata"]["name"]: {r for g in q["spec"]["resourceGroups"] for r in g["coveredResources"]}
               for q in kueue if q["kind"] == "ClusterQueue"}
    values = yaml.safe_load(tree["k8s/kueue/values.yaml"].split("\n", 1)[1] if tree["k8s/kueue/values.yaml"]
                            .startswith("#") else tree["k8s/kueue/values.yaml"])
    config = yaml.safe_load(values["managerConfig"]["controllerManagerConfigYaml"])
    frameworks = set(config["integrations"]["frameworks"])
    excluded = tuple(config.get("resources", {}).get("excludeResourcePrefixes", []))
    queued = [o for o in _docs(tree, "k8s/") + _docs(tree, "jobs/") if QUEUE_LABEL in o["metadata"].get("labels", {})]
    kinds = {o["kind"] for o in queued}
    assert "Deployment" in kinds or "LeaderWorkerSet" in kinds or env == "dev", kinds
    assert queued
    for obj in queued:
        where = f"{obj['kind']} {obj['metadata']['name']}"
        key = (obj["metadata"]["namespace"], obj["metadata"]["labels"][QUEUE_LABEL])
        assert key in local, f"{where}: no LocalQueue {key}"
        assert FRAMEWORK[obj["kind"]] in frameworks, f"{where}: Kueue does not manage {obj['kind']}"
        for pod in _pod_specs(obj):
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                for res in {**c.get("resources", {}).get("requests", {}), **c.get("resources", {}).get("limits", {})}:
                    assert res in covered[local[key]] or res.startswith(excluded), \
                        f"{where}: {c['name']} requests {res}, which queue {local[key]} neither covers nor excludes"
