"""The blueprint's ``mirror:``: the one place that says where an image, a chart or a git source is
pulled from. Every renderer (and the plan, whose resolved images the renderers print) goes
through these functions, so an air-gapped site changes one key and every rendered file follows;
without a mirror they return their input unchanged.

Images keep their upstream name below the mirror registry (``nvcr.io/nvidia/pytorch:25.04-py3`` ->
``<registry>/nvcr.io/nvidia/pytorch:25.04-py3``), so two upstreams never collide and
``aiinfra artifacts --mirror-script`` can copy each one to a name computed the same way.
Upstream names are normalized as github.com/distribution/reference (normalize.go) does: a first
path component with a '.' or ':' or ``localhost`` is a registry, otherwise the image is on
``docker.io``, and a one-component Docker Hub name is under ``library/``.
"""

from __future__ import annotations

import dataclasses

from aiinfra.catalog.charts import Chart, chart
from aiinfra.spec.cluster import Cluster
from aiinfra.spec.models import Mirror

DOCKER_HUB = "docker.io"


def canonical_image(ref: str) -> str:
    """``python:3.12`` -> ``docker.io/library/python:3.12``; a name with its registry is kept."""
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"{DOCKER_HUB}/{ref if sep else 'library/' + ref}"


def mirror_image(mirror: Mirror | None, ref: str) -> str:
    """An image reference (repository, or repository:tag / @digest) as the site pulls it."""
    if mirror is None or not mirror.registry or not ref:
        return ref
    return f"{mirror.registry}/{canonical_image(ref)}"


def mirror_git(mirror: Mirror | None, url: str) -> str:
    """A git URL as the site clones it: ``<git>/<host>/<path>`` below the mirror's git server."""
    if mirror is None or not mirror.git:
        return url
    return f"{mirror.git}/{url.split('://', 1)[-1]}"


def mirror_chart(mirror: Mirror | None, chart: Chart) -> Chart:
    """A chart as the site installs it: from the mirror's Helm repository, or a kustomize source
    from the mirror's git server (``<git>/<host>/<path>``)."""
    if mirror is None:
        return chart
    if chart.is_kustomize and mirror.git:
        return dataclasses.replace(chart, repository=mirror_git(mirror, chart.repository))
    if not chart.is_kustomize and mirror.helm:
        return dataclasses.replace(chart, repository=mirror.helm)
    return chart


def site_image(cluster: Cluster, ref: str) -> str:
    """What every renderer prints for an image: :func:`mirror_image` of the blueprint's mirror."""
    return mirror_image(cluster.blueprint.mirror, ref)


def site_chart(cluster: Cluster, key: str) -> Chart:
    """What every renderer prints for a chart of ``versions.charts``: the catalog's, mirrored."""
    return mirror_chart(cluster.blueprint.mirror, chart(key))
