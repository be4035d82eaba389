"""Argo CD: one Application per folder of ``k8s/`` under ``manifests/<env>/gitops/``.

A finisher (it sees every renderer's artifacts): the platform components of
:data:`aiinfra.render.platform.COMPONENTS` and the workload folders other renderers write
(``k8s/serving/``), which sync after the whole platform.

- ``project.yaml``: the AppProject every Application belongs to (the repositories and
  namespaces they may use).
- ``<component>.yaml``: the Application. A chart-based component has several sources: the chart
  at its pinned version with ``values.yaml`` taken from this repository (``$values``), and the
  component's folder of objects (custom resources, ConfigMaps). Sync waves follow
  :data:`aiinfra.render.platform.COMPONENTS`' ``after`` (operators and CRDs before the custom
  resources that need them). A workload scaled by an autoscaler of the folder (KEDA ScaledObject,
  HorizontalPodAutoscaler) has its ``/spec/replicas`` in ``ignoreDifferences`` with the
  ``RespectIgnoreDifferences=true`` sync option, so self-heal never resets what the autoscaler set
  (Argo CD docs/user-guide/sync-options.md, "Respect ignore differences configs").
- ``root.yaml``: the app of apps that syncs this folder; applied once by hand
  (``kubectl apply -f manifests/<env>/gitops/root.yaml``), not listed in the kustomization.

Rendered only when the blueprint names the repository (``kubernetes.gitops_repo``).
"""

from __future__ import annotations

import yaml

from aiinfra.catalog.charts import chart
from aiinfra.catalog.platform import COMPONENTS, ComponentSpec
from aiinfra.plan.mirror import site_chart
from aiinfra.render import Artifacts, finisher
from aiinfra.render.k8s_hosts import chart_version
from aiinfra.render.kubernetes import namespaces, uses_kubernetes
from aiinfra.render.platform import VALUES_FILE
from aiinfra.render.templates import dump_yaml_documents, render_template
from aiinfra.spec.cluster import Cluster

ARGOCD_NAMESPACE = "argocd"
IN_CLUSTER = "https://kubernetes.default.svc"
PROJECT = "aiinfra-platform"
SYNC_WAVE = "argocd.argoproj.io/sync-wave"


def sync_waves() -> dict[str, int]:
    """Wave of each component: one more than the latest component it comes after."""
    waves: dict[str, int] = {}
    for spec in COMPONENTS:  # COMPONENTS lists every component after those it needs
        waves[spec.name] = 1 + max((waves[a] for a in spec.after), default=-1)
    return waves


def _header(cluster: Cluster, what: str) -> str:
    return f"# {what} of '{cluster.env}', rendered by aiinfra from {cluster.source}. Do not edit.\n"


#: Kinds that scale another object, named in their ``spec.scaleTargetRef`` (KEDA, autoscaling/v2).
AUTOSCALERS = ("ScaledObject", "HorizontalPodAutoscaler")


def autoscaled_replicas(texts: list[str]) -> list[dict]:
    """``ignoreDifferences`` entries: ``/spec/replicas`` of every object an autoscaler among ``texts``
    (the YAML files of one folder) scales."""
    out = []
    for text in texts:
        if not any(f"kind: {k}" in text for k in AUTOSCALERS):
            continue
        for obj in yaml.safe_load_all(text):
            if not isinstance(obj, dict) or obj.get("kind") not in AUTOSCALERS:
                continue
            ref = obj["spec"]["scaleTargetRef"]
            group = ref.get("apiVersion", "apps/v1").rpartition("/")[0]
            out.append({"group": group, "kind": ref.get("kind", "Deployment"), "name": ref["name"],
                        "namespace": obj["metadata"]["namespace"], "jsonPointers": ["/spec/replicas"]})
    return sorted(out, key=lambda d: (d["namespace"], d["kind"], d["name"]))


def application(cluster: Cluster, spec: ComponentSpec, folder_files: set[str], wave: int,
                ignore: list[dict] | None = None) -> dict:
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None and k8s.gitops_repo
    folder = f"manifests/{cluster.env}/k8s/{spec.name}"
    git = {"repoURL": k8s.gitops_repo, "targetRevision": k8s.gitops_revision}
    has_objects = bool(folder_files - {VALUES_FILE, "kustomization.yaml"})
    sources: list[dict] = []
    if spec.chart and chart(spec.chart).is_kustomize:  # a kustomize folder of the project's repository
        c = site_chart(cluster, spec.chart)
        sources.append({"repoURL": c.repository, "targetRevision": chart_version(cluster, c.key), "path": c.path})
    elif spec.chart:
        c = site_chart(cluster, spec.chart)
        sources.append({
            "repoURL": c.argocd_repo_url,
            "chart": c.chart,
            "targetRevision": chart_version(cluster, c.key),
            "helm": {"releaseName": c.release, "valueFiles": [f"$values/{folder}/{VALUES_FILE}"]},
        })
        sources.append({**git, "ref": "values"})
    if has_objects or not spec.chart:
        sources.append({**git, "path": folder})
    options = ["ServerSideApply=true"]  # large CRDs exceed client-side apply's annotation limit
    if spec.chart and has_objects:
        options.append("SkipDryRunOnMissingResource=true")  # the chart brings the CRDs of our objects
    if ignore:  # an autoscaler owns these fields: neither the diff nor a sync may reset them
        options.append("RespectIgnoreDifferences=true")
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": spec.name,
            "namespace": ARGOCD_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "aiinfra", "app.kubernetes.io/part-of": PROJECT},
            "annotations": {SYNC_WAVE: str(wave)},
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": PROJECT,
            "info": [{"name": "description", "value": spec.description}],
            "destination": {"server": IN_CLUSTER, "namespace": spec.namespace},
            "sources": sources,
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": options,
                "retry": {"limit": 5, "backoff": {"duration": "30s", "factor": 2, "maxDuration": "10m"}},
            },
        },
    }
    if ignore:
        app["spec"]["ignoreDifferences"] = ignore
    return app


def project(cluster: Cluster, specs: list[ComponentSpec]) -> dict:
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None and k8s.gitops_repo
    repos = sorted({k8s.gitops_repo, *(site_chart(cluster, s.chart).argocd_repo_url for s in specs if s.chart)})
    spaces = sorted({"default", *(ns.name for ns in namespaces(cluster)), *(s.namespace for s in specs)})
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": PROJECT, "namespace": ARGOCD_NAMESPACE,
                     "labels": {"app.kubernetes.io/managed-by": "aiinfra"}},
        "spec": {
            "description": f"aiinfra platform of '{cluster.env}' (rendered from {cluster.source})",
            "sourceRepos": repos,
            "destinations": [{"server": IN_CLUSTER, "namespace": ns} for ns in spaces],
            # operators install CRDs, ClusterRoles and webhooks
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
        },
    }


def root_application(cluster: Cluster) -> dict:
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None and k8s.gitops_repo
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": f"aiinfra-{cluster.env}", "namespace": ARGOCD_NAMESPACE,
                     "labels": {"app.kubernetes.io/managed-by": "aiinfra"}},
        "spec": {
            "project": "default",
            "destination": {"server": IN_CLUSTER, "namespace": ARGOCD_NAMESPACE},
            "source": {"repoURL": k8s.gitops_repo, "targetRevision": k8s.gitops_revision,
                       "path": f"manifests/{cluster.env}/gitops"},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    }


def component_files(artifacts: Artifacts) -> dict[str, set[str]]:
    """Folder under k8s/ -> its files (relative to the folder), from every renderer's artifacts."""
    files: dict[str, set[str]] = {}
    for path in artifacts:
        parts = path.split("/", 2)
        if parts[0] == "k8s" and len(parts) == 3:
            files.setdefault(parts[1], set()).add(parts[2])
    return files


def workload_spec(name: str) -> ComponentSpec:
    """A folder another renderer writes (serving): synced after the whole platform."""
    return ComponentSpec(name, f"aiinfra:k8s:{name}", "default", None, tuple(c.name for c in COMPONENTS),
                         f"workloads rendered into k8s/{name}/")


@finisher("gitops")
def render_gitops(cluster: Cluster, artifacts: Artifacts) -> Artifacts:
    """A finisher, not a renderer: it sees every folder of k8s/, the platform's and the workloads'."""
    k8s = cluster.blueprint.kubernetes
    if not uses_kubernetes(cluster) or k8s is None or not k8s.gitops_repo:
        return {}
    files = component_files(artifacts)
    known = {s.name for s in COMPONENTS}
    specs = [s for s in COMPONENTS if s.name in files] + [workload_spec(n) for n in sorted(files) if n not in known]
    waves = sync_waves()
    out: Artifacts = {
        "gitops/project.yaml": _header(cluster, "Argo CD project") + dump_yaml_documents([project(cluster, specs)]),
        "gitops/root.yaml": _header(cluster, "Argo CD app of apps (kubectl apply -f once)")
        + dump_yaml_documents([root_application(cluster)]),
    }
    for spec in specs:
        wave = waves.get(spec.name, max(waves.values()) + 1)
        ignore = autoscaled_replicas([text for path, text in sorted(artifacts.items())
                                      if path.startswith(f"k8s/{spec.name}/") and path.endswith(".yaml")])
        out[f"gitops/{spec.name}.yaml"] = _header(cluster, f"Argo CD Application '{spec.name}'") + dump_yaml_documents(
            [application(cluster, spec, files[spec.name], wave, ignore)])
    out["gitops/kustomization.yaml"] = render_template(
        "k8s/kustomization.yaml.j2", env=cluster.env, resources=sorted(p.split("/", 1)[1] for p in out
                                                                       if p != "gitops/root.yaml"))
    return out
