"""The kustomize tree under ``manifests/<env>/k8s/``: one folder per component plus a root.

This module lays the tree and the namespaces; platform components and serving add folders
through :func:`component` so the root kustomization always lists every folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiinfra.catalog.versions import version_tuple
from aiinfra.render import Artifacts, finisher, renderer
from aiinfra.render.templates import render_template
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


def component(name: str, files: dict[str, str], env: str) -> Artifacts:
    """A kustomize component folder ``k8s/<name>/`` with its own kustomization.yaml."""
    out = {f"k8s/{name}/{f}": text for f, text in files.items()}
    out[f"k8s/{name}/kustomization.yaml"] = render_template(
        "k8s/kustomization.yaml.j2", env=env, resources=sorted(files)
    )
    return out


@renderer("k8s-namespaces", "Kubernetes namespaces with Pod Security labels, and the kustomize root")
def render_namespaces(cluster: Cluster) -> Artifacts:
    if not uses_kubernetes(cluster):
        return {}
    text = render_template("k8s/namespaces.yaml.j2", env=cluster.env, namespaces=namespaces(cluster),
                           k8s_minor=k8s_minor(cluster))
    return component("namespaces", {"namespaces.yaml": text}, cluster.env)


@finisher("k8s-root")
def render_root(cluster: Cluster, artifacts: Artifacts) -> Artifacts:
    """kustomization.yaml at the root of the Kubernetes tree, listing every component folder."""
    folders = sorted({p.split("/")[1] for p in artifacts if p.startswith("k8s/") and p.count("/") >= 2})
    if not folders:
        return {}
    return {"k8s/kustomization.yaml": render_template("k8s/kustomization.yaml.j2", env=cluster.env,
                                                       resources=folders)}
