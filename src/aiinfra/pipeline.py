"""The pipeline: the one place that composes the stages.

    blueprint file -> spec (Blueprint, then Cluster) -> plan -> checks

:func:`build_file` (the CLI) and :func:`build_data` (the Pulumi program, from stack config) run
them in order and hand each stage's typed result to the next: the ``blueprint`` checks guard what
building the Cluster relies on; the plan (numbers and resolved workloads) is computed once; the
``cluster`` checks see the Cluster and that Plan. What comes out, a :class:`Built`, is what every
executor takes: renderers are ``fn(cluster, plan)``, Pulumi components and ansible-runner take the
same objects. A blueprint with an error stops here, as a BlueprintError listing every problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiinfra.checks import registry
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan, plan_cluster
from aiinfra.spec.cluster import Cluster, build_cluster, expand_groups
from aiinfra.spec.loader import Source, raise_errors, read_file, read_text, to_blueprint, with_lines


@dataclass(frozen=True)
class Built:
    """A validated environment: its Cluster, its Plan and the warnings that did not stop it."""

    cluster: Cluster
    plan: ClusterPlan
    warnings: tuple[Problem, ...]


def build(source: Source) -> Built:
    """Run every stage over a blueprint as read; raise BlueprintError on the first stage with errors."""
    bp = to_blueprint(source)
    view = registry.BlueprintView(bp, expand_groups(bp))
    found = registry.apply_silence(bp.silence, registry.run("blueprint", view))
    raise_errors(source, found)

    cluster = build_cluster(source.env, source.file, bp, view.hosts, view.addresses.indices)
    plan = plan_cluster(cluster)
    found += registry.apply_silence(bp.silence, registry.run("cluster", cluster, plan))
    raise_errors(source, found)
    return Built(cluster, plan, tuple(with_lines(found, source.lines)))


def build_file(path: Path, display: str | None = None) -> Built:
    """The CLI's entry: one blueprint file (``display``: how messages and headers name it)."""
    return build(read_file(path, display))


def build_text(text: str, file: str, env: str) -> Built:
    return build(read_text(text, file, env))


def build_data(raw: object, file: str, env: str, lines: dict[tuple, int] | None = None) -> Built:
    """The value of ``aiinfra:cluster`` already parsed (the Pulumi program's stack config)."""
    return build(Source(raw, file, env, lines or {}))
