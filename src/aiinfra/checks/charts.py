"""Chart values (``cluster`` phase): every key aiinfra sets in a chart's ``values.yaml`` is a key the
pinned chart has.

The values are the ones the platform renderer prints (:data:`aiinfra.plan.platform_values.CHART_VALUES`);
the keys each chart accepts at each version are the committed facts of
:func:`aiinfra.catalog.charts.chart_keys` (``scripts/chart_keys.py``). A key under a leaf of the list
(a map whose default is ``{}``, a list, a scalar) or under an open path (``<path>.*``: labels,
annotations, resources, subcharts whose source was not read) is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from aiinfra.catalog.charts import OPEN, chart_keys, chart_keys_file, join_key_path
from aiinfra.catalog.names import suggest
from aiinfra.catalog.platform import COMPONENTS
from aiinfra.checks.registry import validator
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.platform_values import CHART_VALUES
from aiinfra.spec.cluster import Cluster

KeyPath = tuple[str, ...]


def unknown_keys(keys: Iterable[KeyPath], values: dict) -> list[tuple[KeyPath, list[str]]]:
    """The key paths of ``values`` the chart does not have, each with the keys its parent has."""
    children: dict[KeyPath, set[str]] = {}
    for path in keys:
        for i in range(len(path)):
            children.setdefault(path[:i], set()).add(path[i])
    found: list[tuple[KeyPath, list[str]]] = []

    def walk(node: dict, at: KeyPath) -> None:
        known = children.get(at, set())
        for key, value in node.items():
            path = (*at, str(key))
            if str(key) not in known:
                found.append((path, sorted(known - {OPEN})))
            elif isinstance(value, dict) and path in children and OPEN not in children[path]:
                walk(value, path)

    walk(values, ())
    return found


@validator("cluster")
def chart_values_known(cluster: Cluster, plan: ClusterPlan) -> Iterator[Problem]:
    if not cluster.groups_for_scheduler("kubernetes") or cluster.blueprint.kubernetes is None:
        return
    pins = cluster.blueprint.versions.charts
    for spec in COMPONENTS:
        build = CHART_VALUES.get(spec.name)
        version = pins.get(spec.chart or "")
        if build is None or not spec.chart or not version:
            continue  # no values, or no pin (charts_pinned reports it)
        where = ("versions", "charts", spec.chart)
        keys = chart_keys(spec.chart, version)
        if keys is None:
            yield Problem(where, "chart-keys-missing",
                          f"no list of the values keys of chart '{spec.chart}' {version}: the values aiinfra "
                          f"renders for it cannot be checked",
                          hint=f"run `python scripts/chart_keys.py {spec.chart}` to extract them from the chart "
                               f"into {chart_keys_file(spec.chart, version).name}, or pin a version that has one")
            continue
        for path, siblings in unknown_keys(keys, build(cluster)):
            yield Problem(where, "chart-value-unknown",
                          f"k8s/{spec.name}/values.yaml sets `{join_key_path(path)}`, a key chart '{spec.chart}' "
                          f"{version} does not have{suggest(path[-1], siblings)}",
                          hint=f"use a key of {chart_keys_file(spec.chart, version).name} "
                               f"(aiinfra.plan.platform_values), or pin a chart version that has it")
