"""Small helpers shared by the renderers of the Kubernetes platform components: the aiinfra labels,
the file header, object metadata, a file of objects and a chart's ``values.yaml``."""

from __future__ import annotations

from aiinfra.catalog.platform import ComponentSpec
from aiinfra.plan.mirror import site_chart
from aiinfra.render.k8s_hosts import chart_version
from aiinfra.render.templates import dump_yaml, dump_yaml_documents
from aiinfra.spec.cluster import Cluster

MANAGED = {"app.kubernetes.io/managed-by": "aiinfra", "app.kubernetes.io/part-of": "aiinfra-platform"}


def header(cluster: Cluster, what: str) -> str:
    return f"# {what} of '{cluster.env}', rendered by aiinfra from {cluster.source}. Do not edit.\n"


def meta(name: str, namespace: str | None = None, **labels: str) -> dict:
    out: dict = {"name": name, "labels": {**MANAGED, **labels}}
    if namespace:
        out["namespace"] = namespace
    return out


def objects_file(cluster: Cluster, what: str, objects: list[dict]) -> str:
    return header(cluster, what) + dump_yaml_documents(objects)


def values_file(cluster: Cluster, spec: ComponentSpec, values: dict) -> str:
    c = site_chart(cluster, spec.chart or "")
    version = chart_version(cluster, c.key)
    repo = "" if c.is_oci else f" --repo {c.repository}"
    return (header(cluster, f"Helm values of {c.reference} {version}")
            + f"# helm upgrade --install {c.release} {c.reference}{repo} --version {version} -n {c.namespace} "
              f"-f values.yaml\n" + dump_yaml(values))
