"""What the rendered platform objects need is installed, as the pinned versions run it: the GPU
Operator's toolkit writes containerd's drop-in, the rail networks take addresses from nv-ipam pools,
Argo CD manages itself, the training operator serves the rendered PyTorchJob."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest
import yaml

from aiinfra.catalog.charts import chart
from aiinfra.catalog.platform import component_spec
from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data
from conftest import ROOT, SHARED, load_stack, render
from k8s_schema import validate_object


@pytest.fixture(scope="module")
def prod_render():
    return render(load_stack("prod"))


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def role_defaults(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


# ------------------------------------------------------------------ GPU Operator: containerd drop-in

def test_the_toolkit_writes_the_drop_in_the_containerd_role_imports_and_leaves_config_toml_in_place(prod_render):
    """gpu-operator v25.10.0 reads CONTAINERD_CONFIG as the top-level config and RUNTIME_DROP_IN_CONFIG
    as the drop-in (controllers/object_controls.go, getRuntimeConfigFiles)."""
    values = yaml.safe_load(prod_render["k8s/gpu-operator/values.yaml"])
    env = {e["name"]: e["value"] for e in values["toolkit"]["env"]}
    containerd = role_defaults("containerd")
    assert env["CONTAINERD_CONFIG"] == f"{containerd['containerd_config_dir']}/config.toml"
    assert env["RUNTIME_DROP_IN_CONFIG"] == role_defaults("container_runtime")["container_runtime_containerd_dropin"]
    assert env["RUNTIME_DROP_IN_CONFIG"].rsplit("/", 1)[0] == containerd["containerd_dropin_dir"]
    template = (ROOT / "roles" / "containerd" / "templates" / "config.toml.j2").read_text()
    assert 'imports = ["{{ containerd_dropin_dir }}/*.toml"]' in template  # the toolkit then adds no import
    assert env["CONTAINERD_SOCKET"] == f"{containerd['containerd_state_dir']}/containerd.sock"
    assert "defaultRuntime" not in values.get("operator", {})  # not a value of the pinned chart


# ------------------------------------------------------------------ Network Operator: nv-ipam

def test_rail_networks_take_addresses_from_nv_ipam_pools_of_the_rail_pod_ranges(prod, prod_render):
    folder = "k8s/network-operator"
    networks = docs(prod_render[f"{folder}/rail-networks.yaml"])
    pools = {p["metadata"]["name"]: p for p in docs(prod_render[f"{folder}/rail-ippools.yaml"])}
    (policy,) = docs(prod_render[f"{folder}/nic-cluster-policy.yaml"])
    assert policy["spec"]["nvIpam"]["image"] == "nvidia-k8s-ipam"  # the policy deploys nv-ipam
    assert "whereabouts" not in "".join(prod_render[p] for p in prod_render if p.startswith(folder))
    namespace = component_spec("network-operator").namespace
    assert chart("network-operator").namespace == namespace  # nv-ipam reads pools in the operator's namespace
    hosts = prod.cluster.groups["gpu-serve"].hosts
    assert len(networks) == len(pools) == 8
    for rail, net in enumerate(networks):
        ipam = json.loads(net["spec"]["ipam"])
        assert ipam["type"] == "nv-ipam"
        pool = pools[ipam["poolName"]]
        assert pool["metadata"]["namespace"] == namespace
        subnet = ipaddress.ip_network(pool["spec"]["subnet"])
        rail_addresses = [ipaddress.ip_address(prod.cluster.hosts[h].rails[rail].ipoib_address) for h in hosts]
        assert all(a not in subnet and a in subnet.supernet() for a in rail_addresses)  # pods above the hosts
        assert pool["spec"]["perNodeBlockSize"] * len(hosts) <= subnet.num_addresses  # every node gets a block
        terms = pool["spec"]["nodeSelector"]["nodeSelectorTerms"]
        assert terms == policy["spec"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"]  # blocks only for the nodes that have the rails


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_ip_pools_and_the_policy_are_valid_against_their_crds(env):
    objs = [o for f in ("rail-ippools.yaml", "nic-cluster-policy.yaml", "rail-networks.yaml")
            for o in docs(render(load_stack(env), only=["k8s-platform"])[f"k8s/network-operator/{f}"])]
    assert {o["kind"] for o in objs} == {"IPPool", "NicClusterPolicy", "IPoIBNetwork"}
    problems = [p for o in objs for p in validate_object(o, "1.31.7")]
    assert not problems, problems


def test_pools_too_small_for_a_block_per_node_are_refused():
    bp = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["aiinfra:cluster"]
    ipoib = ipaddress.ip_network(bp["networks"]["ipoib"]["cidr"])
    pod_range = 2 ** (ipoib.max_prefixlen - bp["networks"]["ipoib"]["rail_prefix"] - 1)
    bp["kubernetes"]["rdma_shared_max_pods"] = pod_range + 1  # dev has one Kubernetes node with rails
    with pytest.raises(BlueprintError) as exc:
        build_data(bp, "dev.yaml", "dev")
    assert ("k8s-rail-pool-too-small", ("kubernetes", "rdma_shared_max_pods")) in {
        (p.id, p.path) for p in exc.value.problems}


def test_the_ip_pool_schema_rejects_a_misspelt_field():
    pool = {"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "IPPool", "metadata": {"name": "x"},
            "spec": {"subnet": "10.0.0.0/24", "perNodeBlockSize": 8, "perNodeBlocksize": 8}}
    assert validate_object(pool, "1.31.7")


# ------------------------------------------------------------------ Argo CD manages itself

def test_argo_cd_is_a_component_whose_application_keeps_its_own_pinned_chart(prod, prod_render):
    (app,) = docs(prod_render["gitops/argocd.yaml"])
    (root,) = docs(prod_render["gitops/root.yaml"])
    (src,) = [s for s in app["spec"]["sources"] if "chart" in s]
    pinned = prod.cluster.blueprint.versions.charts["argo-cd"]
    assert (src["chart"], src["targetRevision"]) == ("argo-cd", pinned)
    # the Application deploys into the namespace where Argo CD and every Application live
    assert app["spec"]["destination"]["namespace"] == app["metadata"]["namespace"] == root["metadata"]["namespace"]
    # the bootstrap line of values.yaml installs the same release name Argo CD then manages
    values = prod_render["k8s/argocd/values.yaml"]
    helm = re.search(r"^# helm upgrade --install (\S+) (\S+) --repo (\S+) --version (\S+) -n (\S+)", values, re.M)
    assert helm and helm.groups() == (src["helm"]["releaseName"], "argo-cd", src["repoURL"], pinned,
                                      app["metadata"]["namespace"])
    assert yaml.safe_load(values)["crds"]["keep"] is True  # Applications survive a removed release
    namespaces = [d["metadata"]["name"] for d in docs(prod_render["k8s/namespaces/namespaces.yaml"])]
    assert app["metadata"]["namespace"] in namespaces


# ------------------------------------------------------------------ the training operator

def test_the_training_operator_installed_is_the_release_whose_crd_the_pytorchjob_is_checked_against():
    """The rendered PyTorchJob (kubeflow.org/v1) is validated against kubeflow/trainer v1.9.4's CRD
    (shared/crds/SOURCES.md): the operator installed must be that release."""
    built = load_stack("dev")
    rendered = render(built)
    jobs = [d for p, t in rendered.items() if p.startswith("jobs/") and p.endswith(".yaml") for d in docs(t)
            if d.get("kind") == "PyTorchJob"]
    assert jobs and {j["apiVersion"] for j in jobs} == {"kubeflow.org/v1"}
    (app,) = docs(rendered["gitops/training-operator.yaml"])
    (src,) = app["spec"]["sources"]
    tag = built.cluster.blueprint.versions.charts["training-operator"]
    assert (src["repoURL"], src["targetRevision"], src["path"]) == (
        "https://github.com/kubeflow/trainer.git", tag, "manifests/overlays/standalone")
    row = next(line for line in (SHARED / "crds" / "SOURCES.md").read_text().splitlines()
               if line.startswith("| kubeflow.org_pytorchjobs.yaml"))
    assert f"tag {tag} " in row
    assert app["spec"]["destination"]["namespace"] == "kubeflow"  # the overlay's namespace
