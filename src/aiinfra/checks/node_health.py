"""The node health check on Kubernetes (``cluster`` phase): what ``k8s/node-health/`` needs.

The check runs on every Kubernetes GPU node in a plain Python image (``aiinfra.render.k8s_health``);
like every image, it is pinned in ``versions.images``, under
:data:`~aiinfra.catalog.k8s_resources.NODECHECK_IMAGE_KEY`.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.catalog.k8s_resources import NODECHECK_IMAGE_KEY
from aiinfra.checks.registry import error, validator
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.spec.cluster import Cluster

EXAMPLE_IMAGE = "python:3.12.8-slim-bookworm"


def image_pinned(ref: str) -> bool:
    """A reference with a digest, or a tag other than ``latest`` (``python:3.12.8-slim-bookworm``)."""
    if "@sha256:" in ref:
        return True
    name = ref.rsplit("/", 1)[-1]  # a registry's port (host:5000/...) is not a tag
    tag = name.partition(":")[2]
    return bool(tag) and tag != "latest"


@validator("cluster")
def nodecheck_image(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    """Kubernetes GPU nodes run the health check: its image is pinned."""
    if not any(g.gpu is not None for g in cluster.groups_for_scheduler("kubernetes")):
        return
    path = ("versions", "images", NODECHECK_IMAGE_KEY)
    image = cluster.blueprint.versions.images.get(NODECHECK_IMAGE_KEY)
    hint = (f"add versions.images.{NODECHECK_IMAGE_KEY}: <a Python 3.9+ image with a version tag>, "
            f"e.g. {EXAMPLE_IMAGE}")
    if not image:
        yield error(path, "k8s-nodecheck-image", "Kubernetes GPU nodes run the node health check, but "
                    f"versions.images has no '{NODECHECK_IMAGE_KEY}' image to run it in", hint)
    elif not image_pinned(image):
        yield error(path, "k8s-nodecheck-image", f"image '{image}' is not pinned: no version tag or digest", hint)
