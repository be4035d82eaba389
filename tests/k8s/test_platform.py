"""The Kubernetes platform as rendered: labels from the fabric, kubeadm, Kueue, operators, GitOps."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from aiinfra.catalog.charts import CHARTS, chart
from aiinfra.catalog.platform import COMPONENTS, components
from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data
from aiinfra.render.k8s_topology import node_labels, node_taints, topology_levels
from aiinfra.render.monitoring import DCGM_FIELDS
from conftest import ROOT, load_stack, render
from k8s_schema import _strict as strict_schema
from k8s_schema import require_crds


@pytest.fixture(scope="module")
def prod_render():
    return render(load_stack("prod"))


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def blueprint(env: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())["config"]["aiinfra:cluster"]


# ------------------------------------------------------------------ labels, taints, topology

def test_a_serving_node_is_labelled_with_its_gpus_su_leaves_and_nvlink_domain(prod):
    labels = node_labels(prod.cluster, "gpu481")
    assert labels["aiinfra.io/gpu-product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["aiinfra.io/gpu-count"] == "8"
    assert labels["aiinfra.io/su"] == "su16"  # gpu481 is the first node of the 16th SU of 32
    assert [labels[f"aiinfra.io/leaf-rail{r}"] for r in range(8)] == [f"su16-leaf-r{r}" for r in range(8)]
    assert labels["aiinfra.io/nvlink-domain"] == "gpu481"  # HGX: one NVLink domain per node
    assert labels["aiinfra.io/lustre"] == "true"
    assert node_taints(prod.cluster, "gpu481") == [{"key": "nvidia.com/gpu", "value": "present",
                                                    "effect": "NoSchedule"}]


def test_control_plane_nodes_get_no_gpu_labels_or_taints(prod):
    assert "aiinfra.io/gpu-count" not in node_labels(prod.cluster, "kcp01")
    assert node_taints(prod.cluster, "kcp01") == []


def test_kueue_topology_levels_are_label_keys_every_gpu_node_carries(prod, prod_render):
    keys = [lvl.node_label for lvl in topology_levels(prod.cluster)]
    assert keys == ["aiinfra.io/su", "aiinfra.io/nvlink-domain", "kubernetes.io/hostname"]
    nodes = yaml.safe_load(prod_render["k8s-hosts/nodes.yaml"])
    for host in prod.cluster.groups["gpu-serve"].hosts:
        assert set(keys[:-1]) <= set(nodes[host]["labels"]), host
    (topology,) = docs(prod_render["k8s/kueue/topology.yaml"])
    assert [lvl["nodeLabel"] for lvl in topology["spec"]["levels"]] == keys


def test_node_label_file_lists_every_kubelet_host_and_only_those(prod, prod_render):
    nodes = yaml.safe_load(prod_render["k8s-hosts/nodes.yaml"])
    assert sorted(nodes) == sorted(["kcp01", "kcp02", "kcp03", *prod.cluster.groups["gpu-serve"].hosts])


# ------------------------------------------------------------------ kubeadm

def test_kubeadm_configuration_carries_the_blueprint_networks_and_ha_endpoint(prod_render):
    by_kind = {d["kind"]: d for d in docs(prod_render["k8s-hosts/kubeadm-config.yaml"])}
    assert set(by_kind) == {"ClusterConfiguration", "InitConfiguration", "JoinConfiguration", "KubeletConfiguration"}
    cc = by_kind["ClusterConfiguration"]
    assert cc["apiVersion"] == "kubeadm.k8s.io/v1beta4"  # Kubernetes 1.31 reads v1beta4
    assert cc["kubernetesVersion"] == "v1.31.7"
    assert cc["controlPlaneEndpoint"] == "10.0.0.5:6443"
    assert cc["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12",
                                "dnsDomain": "cluster.local"}
    assert {"10.0.0.5", "kcp01", "kcp02", "kcp03"} <= set(cc["apiServer"]["certSANs"])
    assert all(set(a) == {"name", "value"} for a in cc["apiServer"]["extraArgs"])  # v1beta4 list form
    join = by_kind["JoinConfiguration"]
    assert join["discovery"]["bootstrapToken"] == {"apiServerEndpoint": "10.0.0.5:6443"}  # token only at run time
    assert by_kind["KubeletConfiguration"]["cgroupDriver"] == "systemd"


def test_kubeadm_uses_v1beta3_before_kubernetes_1_31():
    bp = blueprint("dev")
    bp["versions"]["kubernetes"] = "1.30.9"
    bp["versions"]["images"]["pause"] = "registry.k8s.io/pause:3.9"  # kubeadm 1.30's PauseVersion
    rendered = render(build_data(bp, "dev.yaml", "dev"), only=["k8s-hosts"])
    cc = docs(rendered["k8s-hosts/kubeadm-config.yaml"])[0]
    assert cc["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    assert cc["apiServer"]["extraArgs"] == {"profiling": "false"}


def test_several_control_plane_hosts_without_a_vip_are_refused():
    bp = blueprint("prod")
    del bp["kubernetes"]["api_vip"]
    with pytest.raises(BlueprintError) as exc:
        build_data(bp, "prod.yaml", "prod")  # refused by validate, before anything renders
    assert ("k8s-api-vip-missing", ("kubernetes", "api_vip")) in {(p.id, p.path) for p in exc.value.problems}


# ------------------------------------------------------------------ charts and values

@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_chart_a_component_uses_is_pinned_in_the_stack(env):
    pinned = load_stack(env).cluster.blueprint.versions.charts
    for spec in COMPONENTS:
        if spec.chart:
            assert pinned.get(spec.chart), f"{env}: versions.charts.{spec.chart} is not pinned"
            assert spec.chart in CHARTS


def test_a_missing_chart_pin_names_the_key_and_the_fix():
    bp = blueprint("dev")
    del bp["versions"]["charts"]["kueue"]
    with pytest.raises(BlueprintError) as exc:
        render(build_data(bp, "dev.yaml", "dev"), only=["k8s-platform"])
    (problem,) = exc.value.problems
    assert problem.path == ("versions", "charts", "kueue") and "registry.k8s.io" in problem.hint


def test_gpu_operator_values_are_valid_clusterpolicy_fields(prod_render):
    """The chart copies these keys into its ClusterPolicy: check them against the CRD, strictly."""
    import jsonschema

    crd = yaml.safe_load((require_crds() / "nvidia.com_clusterpolicies.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    values = yaml.safe_load(prod_render["k8s/gpu-operator/values.yaml"])
    chart_only = {"nfd"}  # chart switches that are not ClusterPolicy fields
    schema = strict_schema(version["schema"]["openAPIV3Schema"])["properties"]["spec"]
    subset = {k: v for k, v in values.items() if k not in chart_only}
    # required fields are the chart's defaults; unknown or mistyped fields are ours
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(subset) if e.validator != "required"]
    assert not errors, errors
    assert values["driver"] == {"enabled": False}  # prod: the driver is the host's (Ansible)
    assert values["dcgmExporter"]["enabled"] is True
    assert values["mig"]["strategy"] == "none"


def test_the_operator_installs_the_driver_when_the_blueprint_says_so():
    bp = blueprint("dev")
    bp["kubernetes"].update({"gpu_driver": "operator", "mig_strategy": "mixed"})
    rendered = render(build_data(bp, "dev.yaml", "dev"), only=["k8s-platform"])
    values = yaml.safe_load(rendered["k8s/gpu-operator/values.yaml"])
    assert values["driver"]["enabled"] is True and values["driver"]["version"] == "550.127.08"
    assert values["mig"]["strategy"] == "mixed" and values["migManager"]["enabled"] is True


def test_every_alerted_dcgm_metric_is_collected(prod_render):
    (configmap,) = docs(prod_render["k8s/gpu-operator/dcgm-metrics.yaml"])
    collected = set(re.findall(r"^(DCGM_FI_\w+),", configmap["data"]["dcgm-metrics.csv"], flags=re.M))
    assert collected == {f.name for f in DCGM_FIELDS}
    (rule,) = docs(prod_render["k8s/monitoring/gpu-alerts.yaml"])
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    used = set(re.findall(r"DCGM_FI_\w+", exprs))
    assert used and used <= collected, used - collected
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"GpuXidFatal", "GpuEccDoubleBitErrors", "GpuTemperatureHigh", "GpuMissing"} <= alerts


# ------------------------------------------------------------------ network operator, storage, queues

def test_rdma_shared_mode_gives_one_ipoib_network_per_rail_with_pod_ranges_above_the_hosts(prod, prod_render):
    (policy,) = docs(prod_render["k8s/network-operator/nic-cluster-policy.yaml"])
    assert "rdmaSharedDevicePlugin" in policy["spec"] and "sriovDevicePlugin" not in policy["spec"]
    networks = docs(prod_render["k8s/network-operator/rail-networks.yaml"])
    assert [n["kind"] for n in networks] == ["IPoIBNetwork"] * 8
    assert [n["spec"]["master"] for n in networks] == [f"ib-mlx5_{r}" for r in range(8)]  # the role's names
    import ipaddress
    import json

    pools = {p["metadata"]["name"]: p for p in docs(prod_render["k8s/network-operator/rail-ippools.yaml"])}
    for rail, net in enumerate(networks):
        pod_range = ipaddress.ip_network(pools[json.loads(net["spec"]["ipam"])["poolName"]]["spec"]["subnet"])
        host_addr = ipaddress.ip_address(prod.cluster.hosts["gpu512"].rails[rail].ipoib_address)
        assert host_addr not in pod_range and host_addr in ipaddress.ip_network(pod_range.supernet())


def test_sriov_mode_gives_host_device_networks_per_rail():
    bp = blueprint("dev")
    bp["kubernetes"].update({"rdma": "sriov"})
    rendered = render(build_data(bp, "dev.yaml", "dev"), only=["k8s-platform"])
    networks = docs(rendered["k8s/network-operator/rail-networks.yaml"])
    assert {n["kind"] for n in networks} == {"HostDeviceNetwork"}
    assert networks[3]["spec"]["resourceName"] == "nvidia.com/rail3_vf"
    (policy,) = docs(rendered["k8s/network-operator/nic-cluster-policy.yaml"])
    import json

    resources = json.loads(policy["spec"]["sriovDevicePlugin"]["config"])["resourceList"]
    assert resources[3]["selectors"]["pfNames"] == ["ib-mlx5_3"]


def test_every_workload_namespace_gets_a_bound_lustre_claim(prod_render):
    objs = docs(prod_render["k8s/lustre/lustre.yaml"])
    pvs = {o["metadata"]["name"]: o for o in objs if o["kind"] == "PersistentVolume"}
    claims = [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    assert {c["metadata"]["namespace"] for c in claims} == {"aiinfra-serving", "aiinfra-training"}
    for claim in claims:
        pv = pvs[claim["spec"]["volumeName"]]
        assert pv["spec"]["claimRef"] == {"namespace": claim["metadata"]["namespace"], "name": "lustre"}
        assert pv["spec"]["hostPath"]["path"] == "/lustre"


def test_queue_quotas_split_the_serving_su_in_whole_nodes(prod_render):
    queues = {d["metadata"]["name"]: d for d in docs(prod_render["k8s/kueue/queues.yaml"])
              if d["kind"] == "ClusterQueue"}
    gpus = {name: next(r["nominalQuota"] for r in q["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
                       if r["name"] == "nvidia.com/gpu") for name, q in queues.items()}
    assert gpus == {"serving": 224, "training": 32}  # 0.875 and 0.125 of 32 nodes x 8 GPUs
    assert {q["spec"]["cohortName"] for q in queues.values()} == {"aiinfra"}  # idle quota is borrowed
    local = [d for d in docs(prod_render["k8s/kueue/queues.yaml"]) if d["kind"] == "LocalQueue"]
    assert {(q["metadata"]["namespace"], q["spec"]["clusterQueue"]) for q in local} == {
        ("aiinfra-serving", "serving"), ("aiinfra-training", "training")}


def test_queue_shares_above_one_are_refused():
    bp = blueprint("dev")
    bp["kubernetes"]["queue_gpu_shares"] = {"serving": 0.8, "training": 0.5}
    with pytest.raises(BlueprintError) as exc:
        build_data(bp, "dev.yaml", "dev")  # refused by validate, before anything renders
    (problem,) = exc.value.problems
    assert (problem.id, problem.path) == ("k8s-queue-shares-over-one", ("kubernetes", "queue_gpu_shares"))


# ------------------------------------------------------------------ namespaces and GitOps

@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_workload_namespace_denies_by_default(env):
    rendered = render(load_stack(env), only=["k8s-namespaces"])
    namespaces = [d for d in docs(rendered["k8s/namespaces/namespaces.yaml"])]
    policies = docs(rendered["k8s/namespaces/network-policies.yaml"])
    for ns in namespaces:
        if ns["metadata"]["labels"]["aiinfra.io/purpose"] != "workload":
            continue
        deny = [p for p in policies if p["metadata"]["namespace"] == ns["metadata"]["name"]
                and p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] and "egress" not in p["spec"]]
        assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}, ns["metadata"]["name"]


def test_one_argo_application_per_component_with_chart_version_and_values(prod, prod_render):
    folders = {p.split("/")[1] for p in prod_render if p.startswith("k8s/") and p.count("/") >= 2}
    apps = {p.split("/")[1].removesuffix(".yaml"): docs(t)[0] for p, t in prod_render.items()
            if p.startswith("gitops/") and docs(t) and docs(t)[0]["kind"] == "Application" and p != "gitops/root.yaml"}
    assert set(apps) == folders
    pinned = prod.cluster.blueprint.versions.charts
    for spec in components():  # prod's: Lustre's storage component, not GPFS's
        app = apps[spec.name]
        charts = [s for s in app["spec"]["sources"] if "chart" in s]
        if spec.chart and chart(spec.chart).is_kustomize:  # the project's kustomize folder at the pinned tag
            (src,) = app["spec"]["sources"]
            assert (src["repoURL"], src["targetRevision"], src["path"]) == (
                chart(spec.chart).repository, pinned[spec.chart], chart(spec.chart).path)
        elif spec.chart:
            (src,) = charts
            assert src["targetRevision"] == pinned[spec.chart]
            (values,) = src["helm"]["valueFiles"]
            assert values.startswith("$values/") and values.removeprefix("$values/manifests/prod/") in prod_render
        else:
            assert not charts
    waves = {n: int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for n, a in apps.items()}
    for spec in components():  # prod's: Lustre's storage component, not GPFS's
        assert all(waves[a] < waves[spec.name] for a in spec.after), spec.name


def test_no_gitops_tree_without_a_repository():
    bp = copy.deepcopy(blueprint("dev"))
    del bp["kubernetes"]["gitops_repo"]
    rendered = render(build_data(bp, "dev.yaml", "dev"))
    assert not [p for p in rendered if p.startswith("gitops/")]
