"""Pulumi: one ``aiinfra:serving:VllmDeployment`` component per serving deployment.

The Kubernetes objects are the rendered ones (``aiinfra.render.render_all(cluster,
only=["k8s-serving"])``, parsed in memory, never read from manifests/), applied as one
``kubernetes:yaml/v2:ConfigGroup`` child per deployment. The component waits for the platform
pieces its objects need: the namespaces and the Lustre claim, the GPU Operator
(``nvidia.com/gpu``) always, the Network Operator
(RDMA device plugin) and LWS for multi-node replicas, the monitoring stack for ServiceMonitor
and PrometheusRule, KEDA for a ScaledObject.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml

from aiinfra.spec.cluster import Cluster

TYPE_TOKEN = "aiinfra:serving:VllmDeployment"

#: platform component name -> the object kinds that need it
PLATFORM_NEEDS: dict[str, tuple[str, ...]] = {
    "namespaces": ("*",),  # every object lives in the serving namespace
    "lustre": ("Deployment", "LeaderWorkerSet", "Job"),  # the Lustre claim the pods mount
    "gpu-operator": ("Deployment", "LeaderWorkerSet", "Job"),
    "network-operator": ("LeaderWorkerSet",),
    "lws": ("LeaderWorkerSet",),
    "monitoring": ("ServiceMonitor", "PrometheusRule"),
    "keda": ("ScaledObject",),
}


@dataclass
class VllmDeploymentArgs:
    """Typed inputs of one serving deployment."""

    name: str
    namespace: str
    engine: str  # vllm | tensorrt-llm
    objects: list[dict[str, Any]]  # the rendered Kubernetes objects, in file order
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    platform: list[str] = field(default_factory=list)  # names of the platform components waited for

    @property
    def kinds(self) -> list[str]:
        return sorted({o["kind"] for o in self.objects})


class VllmDeployment(pulumi.ComponentResource):
    """A serving deployment: its workload, Service, policies, monitoring and autoscaler."""

    def __init__(self, name: str, args: VllmDeploymentArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        from pulumi_kubernetes.yaml.v2 import ConfigGroup

        self.args = args
        self.objects = ConfigGroup(
            f"{name}-objects",
            objs=args.objects,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        self.name = pulumi.Output.from_input(args.name)
        self.kinds = pulumi.Output.from_input(args.kinds)
        self.service_url = pulumi.Output.from_input(_service_url(args))
        self.register_outputs({"name": self.name, "kinds": self.kinds, "service_url": self.service_url})


def _service_url(args: VllmDeploymentArgs) -> str:
    for obj in args.objects:
        if obj["kind"] == "Service":
            port = obj["spec"]["ports"][0]["port"]
            return f"http://{obj['metadata']['name']}.{obj['metadata']['namespace']}.svc:{port}"
    return ""


def rendered_objects(cluster: Cluster) -> dict[str, list[dict[str, Any]]]:
    """Deployment name -> its objects, parsed from the artifacts render_all produces in memory."""
    from aiinfra.render import render_all

    out: dict[str, list[dict[str, Any]]] = {}
    for path, text in render_all(cluster, only=["k8s-serving"]).items():
        parts = path.split("/")
        if len(parts) != 4 or parts[:2] != ["k8s", "serving"] or parts[3] == "kustomization.yaml":
            continue
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and "kind" in d]
        out.setdefault(parts[2], []).extend(docs)
    return out


def platform_dependencies(objects: list[dict[str, Any]],
                          platform: Mapping[str, pulumi.Resource]) -> tuple[list[str], list[str]]:
    """(platform names to wait for that exist, names needed but absent from ``platform``)."""
    kinds = {o["kind"] for o in objects} | ({"*"} if objects else set())
    needed = [n for n, need in PLATFORM_NEEDS.items() if kinds & set(need)]
    return [n for n in needed if n in platform], [n for n in needed if n not in platform]


def serving_components(cluster: Cluster, platform: Mapping[str, pulumi.Resource],
                       opts: pulumi.ResourceOptions | None = None) -> list[VllmDeployment]:
    """One component per serving deployment of the cluster (Kubernetes node groups), each
    depending on the platform components (``platform``: name -> resource) its objects need."""
    from aiinfra.render.serving import resolve

    engines = {s.name: s.dep.engine for s in resolve(cluster)}
    out = []
    for name, objects in sorted(rendered_objects(cluster).items()):
        present, absent = platform_dependencies(objects, platform)
        if absent:
            pulumi.log.warn(f"serving '{name}': no platform component {absent} to wait for; its objects may be "
                            "applied before their CRDs or device plugins exist")
        args = VllmDeploymentArgs(
            name=name,
            namespace=objects[0]["metadata"]["namespace"],
            engine=engines.get(name, "vllm"),
            objects=objects,
            depends_on=[platform[n] for n in present],
            platform=present,
        )
        out.append(VllmDeployment(name, args, opts))
    return out
