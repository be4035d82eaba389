"""Monitoring as rendered: every object schema-valid, every metric read is one its exporter exposes at
the pinned version, every host outside Kubernetes a scrape target, every expression parses.

PromQL is parsed with promql-parser (PyPI; Python bindings of the Rust promql-parser crate), which
also gives the metric names an expression reads.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from aiinfra.catalog import monitoring as facts
from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data
from aiinfra.render.monitoring import DCGM_FIELDS, SCRAPE_CONFIGMAP
from aiinfra.spec.cluster import su_name
from conftest import ROOT, load_stack, render
from k8s_schema import require_crds, validate_object

promql = pytest.importorskip("promql_parser", reason="promql-parser is not installed (pip install promql-parser)")

ENVS = ["dev", "prod"]
FOLDER = "k8s/monitoring/"
PROMETHEUS_SERIES = {"up"}  # written by Prometheus itself for every target


@pytest.fixture(scope="module", params=ENVS)
def stack(request):
    built = load_stack(request.param)
    return built, render(built)


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def objects(files: dict[str, str], prefix: str = FOLDER) -> list[dict]:
    return [d for path, text in sorted(files.items()) if path.startswith(prefix) and path.endswith(".yaml")
            and not path.endswith(("kustomization.yaml", "values.yaml")) for d in docs(text)]


def values(files: dict[str, str]) -> dict:
    return yaml.safe_load(files[FOLDER + "values.yaml"])


def selectors(expr: str) -> set[str]:
    """Metric names an expression reads (raises on a PromQL syntax error)."""
    names: set[str] = set()
    promql.walk(promql.parse(expr), lambda n: names.add(n.name) if isinstance(n, promql.VectorSelector) else None)
    return names


def rule_exprs(files: dict[str, str]) -> list[tuple[str, str]]:
    return [(r.get("alert") or r.get("record"), r["expr"]) for d in objects(files, "k8s/")
            if d["kind"] == "PrometheusRule" for g in d["spec"]["groups"] for r in g["rules"]]


def dashboards(files: dict[str, str]) -> list[dict]:
    return [json.loads(text) for d in objects(files) if d["kind"] == "ConfigMap"
            and d["metadata"]["labels"].get("grafana_dashboard") == "1" for text in d["data"].values()]


def panel_exprs(files: dict[str, str]) -> list[tuple[str, list[str]]]:
    return [(f"{d['title']} / {p['title']}", [t["expr"] for t in p["targets"]])
            for d in dashboards(files) for p in d["panels"]]


def vllm_versions(built) -> list[str]:
    images = built.cluster.blueprint.versions.images
    return sorted({image.rsplit(":v", 1)[1] for key, image in images.items() if key.startswith("vllm")})


# ------------------------------------------------------------------ schemas


def test_every_monitoring_object_is_valid_against_its_schema(stack):
    require_crds()
    built, files = stack
    found = objects(files)
    kinds = {d["kind"] for d in found}
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= kinds
    k8s = built.cluster.blueprint.versions.kubernetes
    problems = [p for d in found for p in validate_object(d, k8s)]
    assert problems == []


def test_the_kustomization_lists_every_object_file_and_not_the_values(stack):
    _, files = stack
    listed = set(yaml.safe_load(files[FOLDER + "kustomization.yaml"])["resources"])
    on_disk = {p.removeprefix(FOLDER) for p in files if p.startswith(FOLDER)} - {"kustomization.yaml"}
    assert listed == on_disk - {"values.yaml"}


def test_rendering_is_deterministic(stack):
    built, files = stack
    again = render(built)
    assert {p: t for p, t in again.items() if "monitoring" in p} == {p: t for p, t in files.items() if "monitoring" in p}


# ------------------------------------------------------------------ metric names against the exporters' facts


def _exporter_of(name: str) -> str | None:
    for prefix, exporter in (("DCGM_", "dcgm-exporter"), ("node_infiniband_", "node-exporter"),
                             ("slurm_", "slurm-exporter"), ("vllm:", "vllm")):
        if name.startswith(prefix):
            return exporter
    return None


def _pinned(built, exporter: str) -> list[str]:
    """The versions of ``exporter`` that run in this environment, on hosts and in Kubernetes."""
    bp = built.cluster.blueprint
    if exporter == "vllm":
        return vllm_versions(built)
    pins = [bp.versions.exporters[exporter]] if exporter in bp.versions.exporters else []
    if exporter == "dcgm-exporter":
        pins.append(facts.gpu_operator_dcgm_exporter(bp.versions.charts["gpu-operator"]))
    return pins


def test_every_metric_an_alert_reads_is_exposed_at_every_pinned_version(stack):
    built, files = stack
    missing = []
    for alert, expr in rule_exprs(files):
        for name in selectors(expr) - PROMETHEUS_SERIES:
            exporter = _exporter_of(name)
            assert exporter is not None, f"{alert}: {name} belongs to no known exporter"
            if exporter == "vllm":  # serving's rules follow their deployment's vLLM version
                if not any(name in facts.metrics("vllm", v) for v in _pinned(built, "vllm")):
                    missing.append(f"{alert}: {name} is exposed by no pinned vLLM")
                continue
            for version in _pinned(built, exporter):
                if name not in facts.metrics(exporter, version):
                    missing.append(f"{alert}: {name} is not exposed by {exporter} {version}")
    assert missing == []


def test_every_metric_a_dashboard_reads_is_exposed_by_its_pinned_exporters(stack):
    built, files = stack
    problems = []
    for where, exprs in panel_exprs(files):
        names = set().union(*(selectors(e) for e in exprs)) - PROMETHEUS_SERIES
        by_exporter: dict[str, set[str]] = {}
        for name in names:
            by_exporter.setdefault(_exporter_of(name) or "unknown", set()).add(name)
        assert "unknown" not in by_exporter, (where, by_exporter.get("unknown"))
        for exporter, used in by_exporter.items():
            versions = _pinned(built, exporter)
            exposed = [facts.metrics(exporter, v) for v in versions]
            # a name no known version has is a typo; a panel must show something on every pinned version
            known = [facts.metrics(exporter, v) for v in facts.known_versions(exporter)]
            problems += [f"{where}: {n} exists in no known {exporter}" for n in used if not any(n in e for e in known)]
            problems += [f"{where}: nothing of {sorted(used)} in {exporter} {v}" for v, e in zip(versions, exposed,
                                                                                            strict=True)
                         if not used & e]
    assert problems == []


def test_every_dcgm_metric_read_is_one_the_exporters_collect(stack):
    _, files = stack
    collected = {f.name for f in DCGM_FIELDS}
    read = {n for _, e in rule_exprs(files) for n in selectors(e)}
    read |= {n for _, exprs in panel_exprs(files) for e in exprs for n in selectors(e)}
    assert {n for n in read if n.startswith("DCGM_")} <= collected
    csv = files.get("monitoring/dcgm-counters.csv", "")
    if csv:  # the host-side collectors file is the same list
        assert {line.split(",")[0] for line in csv.splitlines() if line and not line.startswith("#")} == collected


def test_every_alert_expression_parses_and_has_a_summary(stack):
    _, files = stack
    rules = rule_exprs(files)
    assert len(rules) >= 10
    for alert, expr in rules:
        assert selectors(expr), alert  # parses, and reads at least one series
    for d in objects(files):
        if d["kind"] == "PrometheusRule":
            for g in d["spec"]["groups"]:
                for r in g["rules"]:
                    assert r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"]


def test_the_alerts_cover_xid_ecc_nvlink_infiniband_and_drained_nodes(prod_files):
    read = {n for _, e in rule_exprs(prod_files) for n in selectors(e)}
    assert {"DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
            "DCGM_FI_DEV_ROW_REMAP_FAILURE", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
            "node_infiniband_state_id", "node_infiniband_link_downed_total",
            "node_infiniband_symbol_error_total", "slurm_node_count_per_state"} <= read


@pytest.fixture(scope="module")
def prod_files():
    return render(load_stack("prod"))


def test_a_drained_node_state_matches_the_drain_alert(prod_files):
    """sinfo %T names (the exporter's default CLI mode) that mean drained/down match the alerts."""
    import re

    exprs = dict(rule_exprs(prod_files))
    drain = re.search(r'state=~"([^"]+)"', exprs["SlurmNodesDrained"]).group(1).replace("\\\\", "\\")
    down = re.search(r'state=~"([^"]+)"', exprs["SlurmNodesDown"]).group(1).replace("\\\\", "\\")
    for state in ("drained", "draining", "drained*"):
        assert re.fullmatch(drain, state) and not re.fullmatch(down, state), state
    for state in ("down", "down*", "fail"):
        assert re.fullmatch(down, state) and not re.fullmatch(drain, state), state
    for state in ("idle", "allocated", "mixed"):
        assert not re.fullmatch(drain, state) and not re.fullmatch(down, state), state


# ------------------------------------------------------------------ scrape configuration


def _targets(files: dict[str, str]) -> dict[str, list[dict]]:
    (cm,) = [d for d in objects(files) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == SCRAPE_CONFIGMAP]
    return {key.removesuffix(".yaml"): yaml.safe_load(text) for key, text in cm["data"].items()}


def test_every_slurm_gpu_host_is_a_dcgm_and_node_exporter_target_at_its_management_address(stack):
    built, files = stack
    cluster = built.cluster
    slurm_gpu = [h for g in cluster.groups.values() if g.scheduler == "slurm" and g.gpus_per_node for h in g.hosts]
    assert slurm_gpu
    targets = _targets(files)
    for exporter in ("dcgm-exporter", "node-exporter"):
        listed = {t["labels"]["node"]: t["targets"] for t in targets[exporter]}
        port = facts.port(exporter, cluster.blueprint.versions.exporters[exporter])
        for host in slurm_gpu:
            assert listed.get(host) == [f"{cluster.hosts[host].management_address}:{port}"], (exporter, host)
    kubelets = {h for g in cluster.groups.values() if g.scheduler == "kubernetes" for h in g.hosts}
    assert not kubelets & {t["labels"]["node"] for t in targets["dcgm-exporter"]}  # the GPU Operator's
    controllers = cluster.hosts_with_role("slurm_controller")
    assert {t["labels"]["node"] for t in targets["slurm-exporter"]} == set(controllers)


def test_targets_carry_the_node_group_and_su_of_the_fabric_model(prod_files):
    cluster = load_stack("prod").cluster
    for t in _targets(prod_files)["dcgm-exporter"]:
        host = cluster.hosts[t["labels"]["node"]]
        assert t["labels"]["node_group"] == host.group
        assert t["labels"].get("su") == (su_name(host.su) if host.su is not None else None)


def test_scrape_jobs_read_the_files_of_the_configmap_prometheus_mounts(stack):
    _, files = stack
    spec = values(files)["prometheus"]["prometheusSpec"]
    assert spec["configMaps"] == [SCRAPE_CONFIGMAP]
    keys = set(_targets(files))
    read = {path for job in spec["additionalScrapeConfigs"] for sd in job["file_sd_configs"] for path in sd["files"]}
    assert read == {f"/etc/prometheus/configmaps/{SCRAPE_CONFIGMAP}/{k}.yaml" for k in keys}
    assert len({job["job_name"] for job in spec["additionalScrapeConfigs"]}) == len(keys)


def test_infiniband_series_get_the_rail_of_their_hca(prod_files):
    import re

    cluster = load_stack("prod").cluster
    v = values(prod_files)
    host_rules = [j for j in v["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"]
                  if j["job_name"] == "host-node-exporter"][0]["metric_relabel_configs"]
    chart_rules = v["prometheus-node-exporter"]["prometheus"]["monitor"]["metricRelabelings"]
    for name in ("gpu001", "gpu500"):  # a Slurm node and a Kubernetes node
        host = cluster.hosts[name]
        for port in host.rails:
            for rules, src in ((host_rules, "source_labels"), (chart_rules, "sourceLabels")):
                hits = [r["replacement"] for r in rules if r[src] == ["node_group", "device"]
                        and re.fullmatch(r["regex"], f"{host.group};{port.hca}")]
                assert hits == [str(port.rail)], (name, port.hca)


def test_kubernetes_scrapes_attach_the_node_labels(prod_files):
    v = values(prod_files)
    monitor = v["prometheus-node-exporter"]["prometheus"]["monitor"]
    (sm,) = [d for d in objects(prod_files) if d["kind"] == "ServiceMonitor"]
    for attach, relabel in ((monitor["attachMetadata"], monitor["relabelings"]),
                            (sm["spec"]["attachMetadata"], sm["spec"]["endpoints"][0]["relabelings"])):
        assert attach == {"node": True}
        targets = {r["targetLabel"]: r["sourceLabels"][0] for r in relabel}
        assert targets["su"] == "__meta_kubernetes_node_label_aiinfra_io_su"
        assert targets["node"] == "__meta_kubernetes_pod_node_name"


# ------------------------------------------------------------------ dashboards


def test_dashboards_are_sidecar_configmaps_with_unique_uids_and_a_tidy_grid(stack):
    _, files = stack
    boards = dashboards(files)
    assert {b["uid"] for b in boards} == {"aiinfra-gpus", "aiinfra-fabric", "aiinfra-slurm", "aiinfra-vllm"}
    for b in boards:
        ids = [p["id"] for p in b["panels"]]
        assert len(ids) == len(set(ids)), b["uid"]
        cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in b["panels"]]
        assert len(cells) == len(set(cells)), b["uid"]
        assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in b["panels"])
        variables = {v["name"] for v in b["templating"]["list"]}
        for p in b["panels"]:
            assert p["targets"], (b["uid"], p["title"])
            for t in p["targets"]:
                selectors(t["expr"])
                used = {w[1:] for w in t["expr"].replace('"', " ").split() if w.startswith("$")}
                assert used <= variables, (b["uid"], p["title"], used - variables)


def test_dashboards_cover_what_the_issue_asks(prod_files):
    read = {b["uid"]: {n for p in b["panels"] for t in p["targets"] for n in selectors(t["expr"])}
            for b in dashboards(prod_files)}
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_XID_ERRORS",
            "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_POWER_USAGE"} <= read["aiinfra-gpus"]
    assert {"node_infiniband_port_data_transmitted_bytes_total", "node_infiniband_symbol_error_total",
            "node_infiniband_state_id"} <= read["aiinfra-fabric"]
    assert {"slurm_node_count_per_state", "slurm_partition_job_state_total"} <= read["aiinfra-slurm"]
    assert {"vllm:e2e_request_latency_seconds_bucket", "vllm:generation_tokens_total",
            "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"} <= read["aiinfra-vllm"]


def test_the_sidecar_label_is_the_one_the_chart_values_select(prod_files):
    sidecar = values(prod_files)["grafana"]["sidecar"]["dashboards"]
    for d in objects(prod_files):
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("aiinfra-dashboard-"):
            assert d["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"]


# ------------------------------------------------------------------ versions


def test_the_pinned_vllm_images_are_versions_with_metric_facts():
    for env in ENVS:
        for version in vllm_versions(load_stack(env)):
            assert facts.metrics("vllm", version), version


def _blueprint(env: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())["config"]["aiinfra:cluster"]


@pytest.mark.parametrize(("change", "rule"), [
    ({"node-exporter": "1.9.9"}, "unknown-exporter-version"),
    ({"node_exporter": "1.8.2"}, "unknown-exporter"),
])
def test_an_exporter_version_without_facts_is_refused_at_its_key(change, rule):
    bp = copy.deepcopy(_blueprint("dev"))
    bp["versions"]["exporters"].update(change)
    with pytest.raises(BlueprintError) as exc:
        build_data(bp, "dev.yaml", "dev")
    hits = [p for p in exc.value.problems if p.id == rule]
    assert hits and hits[0].path == ("versions", "exporters"), exc.value.problems
    assert next(iter(change)) in hits[0].message


# ------------------------------------------------------------------ the facts against their sources

MIRRORS = Path(os.environ.get("AIINFRA_SOURCE_MIRRORS", "/work/.mirror"))


def test_committed_facts_equal_what_the_script_reads_from_the_sources():
    import importlib.util

    needed = ["NVIDIA+dcgm-exporter", "NVIDIA+go-dcgm", "NVIDIA+gpu-operator", "prometheus+node_exporter",
              "rivosinc+prometheus-slurm-exporter"]
    if not all((MIRRORS / n / "repo").is_dir() for n in needed):
        pytest.skip(f"source mirrors not found under {MIRRORS} (set AIINFRA_SOURCE_MIRRORS)")
    spec = importlib.util.spec_from_file_location("monitoring_facts", ROOT / "scripts" / "monitoring_facts.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    committed = facts.facts()
    assert script.dcgm_exporter(MIRRORS) == committed["dcgm-exporter"]
    assert script.gpu_operator(MIRRORS) == committed["gpu-operator"]
    assert script.node_exporter(MIRRORS) == committed["node-exporter"]
    assert script.slurm_exporter(MIRRORS) == committed["slurm-exporter"]


@pytest.mark.parametrize("exporter", ["dcgm-exporter", "node-exporter", "slurm-exporter"])
def test_an_exporter_the_roles_run_must_be_pinned(exporter):
    bp = copy.deepcopy(_blueprint("dev"))
    del bp["versions"]["exporters"][exporter]
    with pytest.raises(BlueprintError) as exc:
        build_data(bp, "dev.yaml", "dev")
    hits = [p for p in exc.value.problems if p.id == "exporter-not-pinned"]
    assert [p.path for p in hits] == [("versions", "exporters")], exc.value.problems
    assert exporter in hits[0].message and f"versions.exporters.{exporter}" in hits[0].hint
