"""Pulumi: the Kubernetes platform, one ComponentResource per component of
:data:`aiinfra.render.platform.COMPONENTS` (``aiinfra:k8s:GpuOperator``, ...).

Everything comes from the render, in memory (never from manifests/ on disk): each component's
objects are the documents its kustomization lists, applied as one ``kubernetes:yaml/v2:ConfigGroup``;
its chart is a ``kubernetes:helm.sh/v3:Release`` at the version pinned in ``versions.charts`` with
the rendered ``values.yaml``; a component installed from a kustomize folder of its project's
repository (the Kubeflow training-operator) is a ``kubernetes:kustomize/v2:Directory`` of that folder
at the pinned tag. A component waits for the components it comes after (namespaces,
CRDs of monitoring, ...), and inside it the objects wait for the chart that brings their CRDs and
operator. The resource count depends on the components, not on the nodes: node labels are the
host layer's, so 4,096 GPUs add no resource here.

``aiinfra:kubeconfig`` (a secret in the stack) selects the cluster; without it the ambient
kubeconfig is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml

from aiinfra.catalog.charts import chart
from aiinfra.catalog.platform import COMPONENTS, ComponentSpec
from aiinfra.deploy.serving_component import serving_components
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.mirror import site_chart
from aiinfra.render import render_all
from aiinfra.render.platform import VALUES_FILE
from aiinfra.spec.cluster import Cluster

PLATFORM_RENDERERS = ["k8s-namespaces", "k8s-platform", "k8s-node-health"]
HELM_TIMEOUT_S = 900


@dataclass(frozen=True)
class ChartRelease:
    """A pinned Helm chart and the values rendered for it."""

    key: str
    chart: str  # name, or oci:// URL
    repository: str | None  # https repository; None for OCI
    version: str
    release: str
    namespace: str
    values: dict[str, Any]


@dataclass
class PlatformArgs:
    """Typed inputs of one platform component."""

    name: str
    namespace: str
    chart: ChartRelease | None
    objects: list[dict[str, Any]]
    kustomize: str | None = None  # URL of a kustomize folder at a pinned tag, instead of a chart
    depends_on: list[pulumi.Resource] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return sorted({o["kind"] for o in self.objects})


class PlatformComponent(pulumi.ComponentResource):
    """A chart or a kustomize folder (optional) and the objects that need it, in that order."""

    TYPE = "aiinfra:k8s:Component"

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        from pulumi_kubernetes.helm.v3 import Release, ReleaseArgs, RepositoryOptsArgs
        from pulumi_kubernetes.kustomize.v2 import Directory
        from pulumi_kubernetes.yaml.v2 import ConfigGroup

        self.args = args
        self.release: pulumi.Resource | None = None
        self.objects: pulumi.Resource | None = None
        if args.chart is not None:
            c = args.chart
            self.release = Release(
                f"{name}-chart",
                ReleaseArgs(
                    name=c.release,
                    chart=c.chart,
                    version=c.version,
                    repository_opts=RepositoryOptsArgs(repo=c.repository) if c.repository else None,
                    namespace=c.namespace,
                    create_namespace=False,  # the namespaces component owns them (Pod Security labels)
                    values=c.values,
                    timeout=HELM_TIMEOUT_S,
                    atomic=True,
                    cleanup_on_fail=True,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
            )
        if args.kustomize is not None:
            self.release = Directory(f"{name}-kustomize", directory=args.kustomize,
                                     opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)))
        if args.objects:
            needs = [*args.depends_on, *([self.release] if self.release is not None else [])]
            self.objects = ConfigGroup(
                f"{name}-objects",
                objs=args.objects,
                opts=pulumi.ResourceOptions(parent=self, depends_on=needs),
            )
        self.chart_version = pulumi.Output.from_input(args.chart.version if args.chart else "")
        self.kinds = pulumi.Output.from_input(args.kinds)
        self.register_outputs({"chart_version": self.chart_version, "kinds": self.kinds})


class Namespaces(PlatformComponent):
    TYPE = "aiinfra:k8s:Namespaces"


class Monitoring(PlatformComponent):
    TYPE = "aiinfra:k8s:Monitoring"


class GpuOperator(PlatformComponent):
    TYPE = "aiinfra:k8s:GpuOperator"


class NetworkOperator(PlatformComponent):
    TYPE = "aiinfra:k8s:NetworkOperator"


class LustreStorage(PlatformComponent):
    TYPE = "aiinfra:k8s:LustreStorage"


class GpfsStorage(PlatformComponent):
    TYPE = "aiinfra:k8s:GpfsStorage"


class LeaderWorkerSet(PlatformComponent):
    TYPE = "aiinfra:k8s:LeaderWorkerSet"


class Kueue(PlatformComponent):
    TYPE = "aiinfra:k8s:Kueue"


class Keda(PlatformComponent):
    TYPE = "aiinfra:k8s:Keda"


class NodeHealth(PlatformComponent):
    TYPE = "aiinfra:k8s:NodeHealth"


class ArgoCd(PlatformComponent):
    TYPE = "aiinfra:k8s:ArgoCd"


class TrainingOperator(PlatformComponent):
    TYPE = "aiinfra:k8s:TrainingOperator"


CLASSES: dict[str, type[PlatformComponent]] = {
    cls.TYPE: cls for cls in (Namespaces, Monitoring, GpuOperator, NetworkOperator, LustreStorage, GpfsStorage,
                              LeaderWorkerSet, Kueue, Keda, NodeHealth, ArgoCd, TrainingOperator)
}


def rendered_components(cluster: Cluster, plan: ClusterPlan) -> dict[str, dict[str, str]]:
    """Component folder -> {file: text}, from the render in memory."""
    out: dict[str, dict[str, str]] = {}
    for path, text in render_all(cluster, plan, only=PLATFORM_RENDERERS).items():
        parts = path.split("/", 2)
        if parts[0] == "k8s" and len(parts) == 3:
            out.setdefault(parts[1], {})[parts[2]] = text
    return out


def component_args(cluster: Cluster, spec: ComponentSpec, files: dict[str, str]) -> PlatformArgs:
    """The objects the folder's kustomization lists (in its order) and the chart with its values."""
    listed = yaml.safe_load(files["kustomization.yaml"]).get("resources") or []
    objects = [doc for f in listed for doc in yaml.safe_load_all(files[f]) if isinstance(doc, dict) and "kind" in doc]
    release, kustomize = None, None
    if spec.chart and chart(spec.chart).is_kustomize:
        kustomize = site_chart(cluster, spec.chart).kustomize_url(cluster.blueprint.versions.charts[spec.chart])
    elif spec.chart:
        c = site_chart(cluster, spec.chart)
        release = ChartRelease(
            key=c.key,
            chart=c.reference,
            repository=None if c.is_oci else c.repository,
            version=cluster.blueprint.versions.charts[c.key],
            release=c.release,
            namespace=c.namespace,
            values=yaml.safe_load(files[VALUES_FILE]) or {},
        )
    return PlatformArgs(name=spec.name, namespace=spec.namespace, chart=release, objects=objects, kustomize=kustomize)


def kubernetes_provider() -> pulumi.ProviderResource | None:
    """The provider of ``aiinfra:kubeconfig``, or None (the ambient kubeconfig)."""
    kubeconfig = pulumi.Config("aiinfra").get_secret("kubeconfig")
    if kubeconfig is None:
        return None
    from pulumi_kubernetes import Provider

    return Provider("kubernetes", kubeconfig=kubeconfig)


def build_components(cluster: Cluster, plan: ClusterPlan) -> list[pulumi.ComponentResource]:
    """Every platform component (in dependency order), then the serving deployments if that layer
    is installed. Returns [] for a cluster without Kubernetes node groups."""
    rendered = rendered_components(cluster, plan)
    if not rendered:
        return []
    provider = kubernetes_provider()
    opts = pulumi.ResourceOptions(providers=[provider]) if provider is not None else None
    built: dict[str, PlatformComponent] = {}
    for spec in COMPONENTS:
        if spec.name not in rendered:
            continue
        args = component_args(cluster, spec, rendered[spec.name])
        args.depends_on = [built[a] for a in spec.after if a in built]
        built[spec.name] = CLASSES[spec.type_token](spec.name, args, opts)
    components: list[pulumi.ComponentResource] = list(built.values())
    components.extend(serving_components(cluster, plan, dict(built), opts))
    return components
