"""Monitoring and autoscaling of a serving deployment: ServiceMonitor, alert rules, and the declared
autoscaler (KEDA ScaledObject or HPA through prometheus-adapter) on the engine's own metrics."""

from __future__ import annotations

from typing import Any

from aiinfra.catalog import engines as eng
from aiinfra.plan.deployments import ResolvedDeployment
from aiinfra.render.serving_pods import NAMESPACE, SELECTOR_LABEL, meta

MONITORING_NAMESPACE = "monitoring"
#: The Prometheus Operator creates this governing Service for every Prometheus in its namespace,
#: whatever the Helm release is called.
PROMETHEUS_URL = f"http://prometheus-operated.{MONITORING_NAMESPACE}.svc:9090"


def _selector_expr(s: ResolvedDeployment) -> str:
    # Prometheus Operator's target label 'service' is the name of the scraped (client) Service
    return f'namespace="{NAMESPACE}",service="{s.service_name}"'


def service_monitor(s: ResolvedDeployment) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta(s),
        "spec": {"selector": {"matchLabels": {SELECTOR_LABEL: s.name}},
                 "namespaceSelector": {"matchNames": [NAMESPACE]},
                 "endpoints": [{"port": "http", "path": s.engine.metrics_path, "interval": "15s"}]},
    }


def kv_metric(s: ResolvedDeployment) -> str:
    return eng.kv_cache_usage_metric(s.version or (0,))


def prometheus_rule(s: ResolvedDeployment) -> dict[str, Any]:
    sel = _selector_expr(s)
    slo = s.dep.ttft_p95_slo_s
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": meta(s),
        "spec": {"groups": [{
            "name": f"{s.name}.serving",
            "rules": [
                {
                    "alert": "ServingKvCacheNearlyFull",
                    "expr": f"max({kv_metric(s)}{{{sel}}}) > 0.95",
                    "for": "10m",
                    "labels": {"severity": "warning", "deployment": s.name},
                    "annotations": {
                        "summary": f"{s.name}: KV cache above 95 % for 10 minutes",
                        "description": "Requests queue or get preempted; add replicas (max_replicas) or lower "
                                       "max_model_len. Planned: "
                                       f"{s.plan.kv_cache_tokens} tokens of KV cache per replica.",
                    },
                },
                {
                    "alert": "ServingTimeToFirstTokenOverSlo",
                    "expr": (f"histogram_quantile(0.95, sum by (le) (rate({eng.TTFT_METRIC}_bucket{{{sel}}}[5m])))"
                             f" > {slo:g}"),
                    "for": "10m",
                    "labels": {"severity": "warning", "deployment": s.name},
                    "annotations": {
                        "summary": f"{s.name}: time to first token p95 above the {slo:g} s objective",
                        "description": "Prefill is queueing: check vllm:num_requests_waiting and scale out.",
                    },
                },
            ],
        }]},
    }


def _target_ref(s: ResolvedDeployment) -> dict[str, str]:
    if s.multi_node:
        return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": s.name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": s.name}


def scaled_object(s: ResolvedDeployment) -> dict[str, Any]:
    sel = _selector_expr(s)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta(s),
        "spec": {
            "scaleTargetRef": _target_ref(s),
            "minReplicaCount": s.min_replicas,
            "maxReplicaCount": s.max_replicas,
            "pollingInterval": 30,
            "cooldownPeriod": 600,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                # a replica takes minutes to load: add fast, remove slowly
                "scaleDown": {"stabilizationWindowSeconds": 600,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]},
            }}},
            "triggers": [
                {"type": "prometheus", "name": "waiting-requests", "metricType": "AverageValue",
                 "metadata": {"serverAddress": PROMETHEUS_URL,
                              "query": f"sum({eng.WAITING_METRIC}{{{sel}}})",
                              "threshold": str(s.dep.scale_waiting_requests)}},
                {"type": "prometheus", "name": "kv-cache-usage", "metricType": "Value",
                 "metadata": {"serverAddress": PROMETHEUS_URL,
                              "query": f"avg({kv_metric(s)}{{{sel}}})",
                              "threshold": f"{s.dep.scale_kv_cache_usage:g}"}},
            ],
        },
    }


def adapter_metric_name(metric: str) -> str:
    """The custom-metrics name prometheus-adapter must expose for a vLLM metric (no ':')."""
    return metric.replace(":", "_")


def horizontal_autoscaler(s: ResolvedDeployment) -> dict[str, Any]:
    milli = round(s.dep.scale_kv_cache_usage * 1000)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(s),
        "spec": {
            "scaleTargetRef": _target_ref(s),
            "minReplicas": s.min_replicas,
            "maxReplicas": s.max_replicas,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600,
                                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}},
            "metrics": [
                {"type": "Pods", "pods": {"metric": {"name": adapter_metric_name(eng.WAITING_METRIC)},
                                          "target": {"type": "AverageValue",
                                                     "averageValue": str(s.dep.scale_waiting_requests)}}},
                {"type": "Pods", "pods": {"metric": {"name": adapter_metric_name(kv_metric(s))},
                                          "target": {"type": "AverageValue", "averageValue": f"{milli}m"}}},
            ],
        },
    }

