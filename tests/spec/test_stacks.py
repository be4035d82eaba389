"""The built-in environments load, and their derived facts match the centre's cluster and the blueprint."""

from __future__ import annotations

import ipaddress
import json

from ClusterShell.NodeSet import NodeSet


def test_prod_is_the_centres_cluster(prod):
    c = prod.cluster
    # The centre's cluster: 512 nodes x 8 H100 = 4,096 GPUs, 80 GB each.
    assert c.totals["gpu_nodes"] == 512
    assert c.totals["gpus"] == 4096
    assert c.totals["hbm_bytes"] == 4096 * 80 * 2**30
    # The site's ~3 MW does not cover 4,096 H100 at 700 W plus the nodes around them: the planner says so.
    # Its speculative decoding pays (a short draft): no serving-speculation-no-gain.
    # trtllm-serve takes no API key: the TensorRT-LLM deployment relies on its gateway's authentication
    # (gateway_auth: true), so prod is not open without credentials.
    assert [p.id for p in prod.warnings] == ["plan-power-budget"]


def test_prod_speculation_pays_and_a_long_draft_is_warned():
    import yaml

    from aiinfra.checks.serving import MIN_SPECULATION_SPEEDUP
    from aiinfra.pipeline import build_data
    from conftest import ROOT

    def load_variant(data):
        return build_data(data, "stacks/Pulumi.prod.yaml", "prod")

    data = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"]["aiinfra:cluster"]
    built = load_variant(data)
    planned = [d for d in built.plan.deployments if d.plan.speculation]
    assert planned and all(d.plan.speculation.speedup >= MIN_SPECULATION_SPEEDUP for d in planned)
    # prod's earlier draft length: slower than no speculation, so a warning
    # whose hint names the length that pays
    spec = data["serving"][0]["speculative"]
    spec["num_tokens"] = 5
    warned = [p for p in load_variant(data).warnings if p.id == "serving-speculation-no-gain"]
    assert [p.key_path for p in warned] == ["aiinfra:cluster.serving[0].speculative"]
    assert "x decode speed" in warned[0].message and f"num_tokens: {planned[0].dep.speculative.num_tokens}" in warned[0].hint
    # no draft length pays at a low acceptance rate: the hint asks for another draft, not a length
    spec["acceptance_rate"] = 0.3
    (warned,) = [p for p in load_variant(data).warnings if p.id == "serving-speculation-no-gain"]
    assert "num_tokens" not in warned.hint and "smaller draft model" in warned.hint


def test_prod_fabric_is_sixteen_sus_of_eight_rails(prod):
    f = prod.cluster.fabric
    assert (f.su_count, f.su_nodes, f.rails, f.rate_gbps) == (16, 32, 8, 400)
    # one leaf per rail per SU; half a 64-port leaf goes up: 16 leaves x 32 uplinks / 64 ports = 8 spines per rail
    assert f.leaf_switches == 16 * 8
    assert f.spine_switches == 8 * 8


def test_every_gpu_node_has_one_port_per_rail_on_its_sus_leaf(prod):
    hosts = prod.cluster.hosts
    for name in ("gpu001", "gpu032", "gpu033", "gpu480", "gpu481", "gpu512"):
        h = hosts[name]
        number = int(name[3:])
        assert h.su == (number - 1) // 32 + 1
        assert [p.hca for p in h.rails] == [f"mlx5_{r}" for r in range(8)]
        assert {p.leaf for p in h.rails} == {f"su{h.su:02d}-leaf-r{r}" for r in range(8)}
        assert [p.spine_group for p in h.rails] == [f"spine-r{r}" for r in range(8)]


def test_slurm_and_kubernetes_split_on_an_su_boundary(prod):
    c = prod.cluster
    slurm_sus = {c.hosts[h].su for g in c.groups_for_scheduler("slurm") for h in g.hosts}
    k8s_sus = {c.hosts[h].su for g in c.groups_for_scheduler("kubernetes") for h in g.hosts}
    assert slurm_sus == set(range(1, 16))
    assert k8s_sus == {16}


def test_address_plan_is_unique_and_inside_each_network(prod):
    c = prod.cluster
    bp = c.blueprint
    for attr, cidr in (("management_address", bp.networks.management.cidr),
                       ("bmc_address", bp.networks.bmc.cidr), ("storage_address", bp.networks.storage.cidr)):
        addrs = [getattr(h, attr) for h in c.hosts.values()]
        assert len(set(addrs)) == len(addrs)
        net = ipaddress.IPv4Network(cidr)
        assert all(ipaddress.IPv4Address(a) in net for a in addrs)
    # rail r of every GPU node lies in the r-th /16 of 10.64.0.0/13, same host part as management
    gpu123 = c.hosts["gpu123"]
    assert gpu123.management_address == "10.0.4.99"  # address_index 1001 + 122 = 1123 = 4*256 + 99
    assert [p.ipoib_address for p in gpu123.rails] == [f"10.{64 + r}.4.99" for r in range(8)]
    ipoib = [p.ipoib_address for h in c.hosts.values() for p in h.rails]
    assert len(set(ipoib)) == len(ipoib) == 512 * 8


def test_groups_in_the_blueprint_order_and_hostlists(prod):
    groups = prod.cluster.groups
    assert list(groups) == ["mgmt", "slurmdb", "login", "k8s-cp", "gpu-train", "gpu-serve"]
    assert groups["gpu-train"].hostlist == "gpu[001-480]"
    assert len(NodeSet(groups["gpu-serve"].hostlist)) == 32


def test_show_json_reports_the_totals_with_units(aiinfra):
    r = aiinfra("show", "--stack", "prod", "--json")
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["totals"]["gpu_nodes"] == 512
    assert data["totals"]["gpus"] == 4096
    assert data["totals"]["hbm_bytes"] == 4096 * 80 * 2**30
    assert data["fabric"]["su_count"] == 16
    assert data["fabric"]["rails"] == 8
    assert data["schedulers"] == {"slurm": {"nodes": 480, "gpus": 3840}, "kubernetes": {"nodes": 32, "gpus": 256}}


def test_show_tables_and_validate_for_both_stacks(aiinfra):
    for env in ("dev", "prod"):
        r = aiinfra("validate", "--stack", env)
        assert r.code == 0, r.stderr
        assert "ok" in r.stdout
        r = aiinfra("show", "--stack", env)
        assert r.code == 0 and "GPUs" in r.stdout


def test_default_stack_is_dev_unless_the_environment_names_one(aiinfra, monkeypatch):
    monkeypatch.delenv("AIINFRA_STACK", raising=False)
    assert "16 GPUs" in aiinfra("validate").stdout
    monkeypatch.setenv("AIINFRA_STACK", "prod")
    assert "4096 GPUs" in aiinfra("validate").stdout


def test_schema_accepts_both_stack_files(aiinfra):
    import jsonschema
    import yaml

    from conftest import ROOT

    r = aiinfra("schema")
    assert r.code == 0
    schema = json.loads(r.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    for env in ("dev", "prod"):
        doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())
        jsonschema.validate(doc, schema)
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    doc["config"]["aiinfra:cluster"]["node_groups"][0]["bogus"] = 1
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("schema accepted an unknown key")
