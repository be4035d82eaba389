"""Pulumi: one ``aiinfra:serving:VllmDeployment`` component per serving deployment.

The Kubernetes objects are the rendered ones (:func:`aiinfra.render.serving.objects`: the same
objects the files under ``k8s/serving/`` hold, taken as objects, never parsed back), applied as one
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

from aiinfra.catalog.platform import PARALLEL_FS_COMPONENT
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.render.serving import objects as serving_objects
from aiinfra.spec.cluster import Cluster

TYPE_TOKEN = "aiinfra:serving:VllmDeployment"
STORAGE_NEED = "storage"  # stands for the storage component of the cluster's parallel file system

#: platform component name -> the object kinds that need it
PLATFORM_NEEDS: dict[str, tuple[str, ...]] = {
    "namespaces": ("*",),  # every object lives in the serving namespace
    # the parallel file system's claim the pods mount: the storage component of storage.parallel_fs
    # (PARALLEL_FS_COMPONENT: lustre or gpfs), named when the cluster is known
    STORAGE_NEED: ("Deployment", "LeaderWorkerSet", "Job"),
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


def platform_dependencies(objects: list[dict[str, Any]], platform: Mapping[str, pulumi.Resource],
                          parallel_fs: str = "lustre") -> tuple[list[str], list[str]]:
    """(platform names to wait for that exist, names needed but absent from ``platform``); the
    storage component is the one of ``parallel_fs`` (storage.parallel_fs)."""
    kinds = {o["kind"] for o in objects} | ({"*"} if objects else set())
    names = {STORAGE_NEED: PARALLEL_FS_COMPONENT[parallel_fs]}
    needed = [names.get(n, n) for n, need in PLATFORM_NEEDS.items() if kinds & set(need)]
    return [n for n in needed if n in platform], [n for n in needed if n not in platform]


def serving_components(cluster: Cluster, plan: ClusterPlan, platform: Mapping[str, pulumi.Resource],
                       opts: pulumi.ResourceOptions | None = None) -> list[VllmDeployment]:
    """One component per serving deployment of the cluster (Kubernetes node groups), each
    depending on the platform components (``platform``: name -> resource) its objects need."""
    engines = {s.name: s.dep.engine for s in plan.deployments}
    out = []
    for name, objects in sorted(serving_objects(cluster, plan).items()):
        present, absent = platform_dependencies(objects, platform, cluster.blueprint.storage.parallel_fs)
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
