"""Facts about the Prometheus exporters aiinfra runs: the metrics each one exposes at each pinned
version, and its default port. ``data/monitoring_metrics.json`` is generated from each version's
source by ``scripts/monitoring_facts.py`` (each entry names its source); nothing here is typed
by hand except which exporter runs where.

Exporters on hosts outside Kubernetes are pinned in ``versions.exporters``; inside Kubernetes the
charts run them (kube-prometheus-stack's node-exporter, the GPU Operator's dcgm-exporter).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from aiinfra.catalog.engines import VLLM, format_version
from aiinfra.catalog.names import suggest
from aiinfra.catalog.versions import Incompatibility, version_tuple

_DATA = Path(__file__).resolve().parent / "data" / "monitoring_metrics.json"

#: keys of ``versions.exporters``: the exporters the host roles install outside Kubernetes
HOST_EXPORTERS = ("dcgm-exporter", "node-exporter", "slurm-exporter")


@cache
def facts() -> dict:
    return json.loads(_DATA.read_text())


def known_versions(exporter: str) -> list[str]:
    if exporter == "vllm":
        return [format_version(v) for v in VLLM.versions]
    return sorted(facts().get(exporter, {}))


def exposed(name: str, kind: str) -> set[str]:
    """The series names a metric of ``kind`` is exposed as (Prometheus text format, as the Python
    and Go clients write it): a Python counter gains ``_total``, a histogram ``_bucket``, ``_sum``
    and ``_count``."""
    if kind == "counter" and name.startswith("vllm:"):
        return {name.removesuffix("_total") + "_total"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return {name}


def metrics(exporter: str, version: str) -> set[str]:
    """Every series name ``exporter`` exposes at ``version`` (KeyError: no facts for it). vLLM's come
    from the engine table (catalog/engines.py, generated from its sdists with its flags): one source
    for what a vLLM release exports, without the metrics it hides by default."""
    if exporter == "vllm":
        return _vllm_metrics(version_tuple(version.lstrip("v")))
    entry = facts()[exporter][version.lstrip("v") if exporter != "gpu-operator" else version]
    return {series for name, kind in entry["metrics"].items() for series in exposed(name, kind)}


def _vllm_metrics(version: tuple[int, ...]) -> set[str]:
    if not VLLM.knows(version):
        raise KeyError(f"vllm {format_version(version)}")
    return {series for name, spans in VLLM.metric_spans().items() for span in spans
            if version_tuple(span["from"]) <= version <= version_tuple(span["to"]) and not span.get("hidden")
            for series in exposed(name, span["type"])}


def port(exporter: str, version: str) -> int:
    return int(facts()[exporter][version.lstrip("v")]["port"])


def gpu_operator_dcgm_exporter(chart_version: str) -> str | None:
    """The dcgm-exporter version the GPU Operator chart runs by default (None: no facts)."""
    entry = facts()["gpu-operator"].get(chart_version)
    return entry["dcgm_exporter"] if entry else None


def check_exporters(exporters: dict[str, str]) -> list[Incompatibility]:
    """Every pinned host exporter is one whose metrics aiinfra knows (the dashboards and alerts are
    checked against them: aiinfra.catalog.monitoring)."""
    found = []
    for name, version in sorted(exporters.items()):
        if name not in HOST_EXPORTERS:
            found.append(Incompatibility("unknown-exporter", f"versions.exporters has no exporter '{name}' "
                                         f"(known: {', '.join(HOST_EXPORTERS)}){suggest(name, HOST_EXPORTERS)}",
                                         ("exporters",)))
        elif version.lstrip("v") not in known_versions(name):
            found.append(Incompatibility("unknown-exporter-version", f"{name} {version} is not a version whose metrics "
                                         f"aiinfra knows (known: {', '.join(known_versions(name))})", ("exporters",)))
    return found
