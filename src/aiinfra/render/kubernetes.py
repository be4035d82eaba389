"""The kustomize tree under ``manifests/<env>/k8s/``: one folder per component plus a root.

This module lays the tree and the namespaces; platform components and serving add folders
through :func:`component` so the root kustomization always lists every folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiinfra.catalog.versions import version_tuple
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.render import Artifacts, finisher, renderer
from aiinfra.render.templates import dump_yaml_documents, render_template
from aiinfra.spec.cluster import Cluster


@dataclass(frozen=True)
class Namespace:
    name: str
    purpose: str  # platform | workload
    enforce: str  # Pod Security level enforced
    warn: str


# Operators that load drivers or device plugins need privileged pods; workloads run restricted
# where their images allow it (GPU serving and training need baseline for /dev/shm and IPC).
PLATFORM_NAMESPACES = (
    Namespace("gpu-operator", "platform", "privileged", "privileged"),
    Namespace("network-operator", "platform", "privileged", "privileged"),
    Namespace("kueue-system", "platform", "restricted", "restricted"),
    Namespace("lws-system", "platform", "restricted", "restricted"),
    Namespace("monitoring", "platform", "privileged", "privileged"),
    Namespace("keda", "platform", "baseline", "restricted"),
    Namespace("argocd", "platform", "baseline", "restricted"),
)
WORKLOAD_NAMESPACES = (
    Namespace("aiinfra-serving", "workload", "baseline", "restricted"),
    Namespace("aiinfra-training", "workload", "baseline", "restricted"),
)


def uses_kubernetes(cluster: Cluster) -> bool:
    return bool(cluster.groups_for_scheduler("kubernetes"))


def namespaces(cluster: Cluster) -> list[Namespace]:
    return [*PLATFORM_NAMESPACES, *WORKLOAD_NAMESPACES]


def k8s_minor(cluster: Cluster) -> str:
    major, minor = version_tuple(cluster.blueprint.versions.kubernetes or "1.31")[:2]
    return f"{major}.{minor}"


def component(name: str, files: dict[str, str], env: str, values: list[str] | tuple[str, ...] = ()) -> Artifacts:
    """A kustomize component folder ``k8s/<name>/`` with its own kustomization.yaml.

    ``values`` names files of the folder that are not Kubernetes objects (a chart's values.yaml):
    they sit beside the objects for Argo CD and Pulumi but kustomize does not list them."""
    out = {f"k8s/{name}/{f}": text for f, text in files.items()}
    out[f"k8s/{name}/kustomization.yaml"] = render_template(
        "k8s/kustomization.yaml.j2", env=env, resources=sorted(f for f in files if f not in values)
    )
    return out


def network_policies(namespace: Namespace) -> list[dict]:
    """Default deny in and out; then DNS, the namespace's own pods, and Prometheus's scrapes."""
    meta = {"namespace": namespace.name, "labels": {"app.kubernetes.io/managed-by": "aiinfra"}}
    every_pod: dict = {}
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "default-deny", **meta},
         "spec": {"podSelector": every_pod, "policyTypes": ["Ingress", "Egress"]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "allow-dns", **meta},
         "spec": {"podSelector": every_pod, "policyTypes": ["Egress"], "egress": [{
             "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                     "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
             "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "allow-same-namespace", **meta},
         "spec": {"podSelector": every_pod, "policyTypes": ["Ingress", "Egress"],
                  "ingress": [{"from": [{"podSelector": {}}]}], "egress": [{"to": [{"podSelector": {}}]}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "allow-monitoring-scrape", **meta},
         "spec": {"podSelector": every_pod, "policyTypes": ["Ingress"], "ingress": [{"from": [
             {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}]}},
    ]


@renderer("k8s-namespaces", "Kubernetes namespaces with Pod Security labels, NetworkPolicies, kustomize root")
def render_namespaces(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    if not uses_kubernetes(cluster):
        return {}
    text = render_template("k8s/namespaces.yaml.j2", env=cluster.env, namespaces=namespaces(cluster),
                           k8s_minor=k8s_minor(cluster))
    policies = [p for ns in namespaces(cluster) if ns.purpose == "workload" for p in network_policies(ns)]
    header = f"# NetworkPolicies of the workload namespaces of '{cluster.env}', rendered by aiinfra. Do not edit.\n"
    return component("namespaces", {"namespaces.yaml": text,
                                    "network-policies.yaml": header + dump_yaml_documents(policies)}, cluster.env)


@finisher("k8s-root")
def render_root(cluster: Cluster, artifacts: Artifacts) -> Artifacts:
    """kustomization.yaml at the root of the Kubernetes tree, listing every component folder."""
    folders = sorted({p.split("/")[1] for p in artifacts if p.startswith("k8s/") and p.count("/") >= 2})
    if not folders:
        return {}
    return {"k8s/kustomization.yaml": render_template("k8s/kustomization.yaml.j2", env=cluster.env,
                                                       resources=folders)}
