"""`aiinfra node` without a cluster: hostlists and reasons, the blueprint change it prints, the
scontrol output it reads, and the Kubernetes side against a fake API.

No kube-apiserver can run here, so the Kubernetes actions (:class:`aiinfra.deploy.nodes.KubeNodes`)
run against :class:`FakeCoreV1`, a small stand-in for the ``kubernetes`` client's CoreV1Api: it
holds node and pod objects with the real models' attribute names (``metadata.owner_references``,
``spec.taints[].time_added`` ...), records every call, applies patches the way the API server
applies a strategic merge patch of a Node (``spec.taints`` has no merge key: the list is replaced
whole; an annotation set to null is deleted; a stale ``metadata.resourceVersion`` is a 409), and
answers evictions through PodDisruptionBudgets (HTTP 429 while the budget allows no disruption),
raising an exception shaped like ``kubernetes.client.ApiException`` (``status``, ``reason``, ``body``).
The Slurm side runs for real in tests/slurm/test_node_cli.py.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
import yaml

from aiinfra.catalog.k8s_resources import NODE_STATE_KEY, NODE_STATE_REASON_ANNOTATION
from aiinfra.deploy.ansible import DeployError, ModuleResult
from aiinfra.deploy.nodes import (
    KubeNodes,
    SlurmNode,
    blueprint_change,
    by_scheduler,
    checked_reason,
    parse_show_node,
    resolve_hosts,
    scontrol_update,
)
from aiinfra.errors import UsageError
from aiinfra.pipeline import build_text
from aiinfra.spec.models import NodeState
from conftest import ROOT, load_stack

TESTBED = ROOT / "tests" / "fixtures" / "slurm-testbed" / "stacks" / "Pulumi.testbed.yaml"
GPU_TAINT = SimpleNamespace(key="nvidia.com/gpu", value="present", effect="NoSchedule", time_added=None)
PDB_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."


# ---------------------------------------------------------------- the fake API


class FakeApiException(Exception):
    def __init__(self, status: int, reason: str, message: str = ""):
        super().__init__(f"({status}) {reason}")
        self.status, self.reason = status, reason
        self.body = json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": status})


class Unreachable(Exception):
    pass


def make_node(name, taints=(), annotations=None, unschedulable=None, ready="True"):
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name, annotations=dict(annotations or {}), resource_version="1"),
        spec=SimpleNamespace(taints=list(taints) or None, unschedulable=unschedulable),
        status=SimpleNamespace(conditions=[SimpleNamespace(type="Ready", status=ready)]))


def make_pod(name, node, namespace="default", owner=None, labels=None, annotations=None):
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name, namespace=namespace, labels=dict(labels or {}),
                                 annotations=annotations, owner_references=[SimpleNamespace(kind=owner)] if owner else None),
        spec=SimpleNamespace(node_name=node))


class FakeCoreV1:
    """CoreV1Api's read_node, patch_node, list_pod_for_all_namespaces, create_namespaced_pod_eviction."""

    def __init__(self, nodes, pods, pdbs=None):
        self.nodes = {n.metadata.name: n for n in nodes}
        self.pods = {(p.metadata.namespace, p.metadata.name): p for p in pods}
        # label selector (key, value) -> disruptions allowed at each eviction request, in turn
        self.pdbs = {k: list(v) for k, v in (pdbs or {}).items()}
        self.calls: list[tuple] = []
        self.conflicts = 0  # patches answered 409 before the next one applies
        self.down = False

    def _up(self):
        if self.down:
            raise Unreachable("Max retries exceeded with url: /api/v1/nodes")

    def read_node(self, name):
        self._up()
        self.calls.append(("read_node", name))
        if name not in self.nodes:
            raise FakeApiException(404, "Not Found", f'nodes "{name}" not found')
        return self.nodes[name]

    def patch_node(self, name, body):
        self._up()
        self.calls.append(("patch_node", name, json.loads(json.dumps(body))))
        node = self.nodes[name]
        if self.conflicts:
            self.conflicts -= 1
            node.metadata.resource_version = str(int(node.metadata.resource_version) + 1)
            raise FakeApiException(409, "Conflict", "the object has been modified")
        meta, spec = body.get("metadata", {}), body.get("spec", {})
        if meta.get("resourceVersion") not in (None, node.metadata.resource_version):
            raise FakeApiException(409, "Conflict", "the object has been modified")
        for key, value in meta.get("annotations", {}).items():
            if value is None:
                node.metadata.annotations.pop(key, None)
            else:
                node.metadata.annotations[key] = value
        if "unschedulable" in spec:
            node.spec.unschedulable = spec["unschedulable"]
        if "taints" in spec:  # no patch merge key on NodeSpec.taints: replaced whole
            node.spec.taints = [SimpleNamespace(key=t["key"], value=t.get("value"), effect=t["effect"],
                                                time_added=t.get("timeAdded")) for t in spec["taints"]] or None
        node.metadata.resource_version = str(int(node.metadata.resource_version) + 1)
        return node

    def list_pod_for_all_namespaces(self, field_selector):
        self._up()
        self.calls.append(("list_pod_for_all_namespaces", field_selector))
        key, _, value = field_selector.partition("=")
        assert key == "spec.nodeName"
        return SimpleNamespace(items=[p for p in self.pods.values() if p.spec.node_name == value])

    def create_namespaced_pod_eviction(self, name, namespace, body):
        self._up()
        self.calls.append(("evict", namespace, name, body))
        assert body == {"apiVersion": "policy/v1", "kind": "Eviction",
                        "metadata": {"name": name, "namespace": namespace}}
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise FakeApiException(404, "Not Found", f'pods "{name}" not found')
        for (label, value), allowed in self.pdbs.items():
            if pod.metadata.labels.get(label) == value:
                budget = allowed.pop(0) if len(allowed) > 1 else allowed[0]
                if budget < 1:
                    raise FakeApiException(429, "Too Many Requests", PDB_MESSAGE)
        del self.pods[(namespace, name)]
        return body


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def kube(core, clock=None, timeout=30):
    clock = clock or Clock()
    return KubeNodes(core, FakeApiException, Unreachable, evict_timeout_s=timeout, retry_interval_s=5,
                     sleep=clock.sleep, clock=clock)


def busy_node():
    pods = [make_pod("web-1", "gpu02", owner="ReplicaSet", labels={"app": "web"}),
            make_pod("dcgm-exporter-x", "gpu02", namespace="gpu-operator", owner="DaemonSet"),
            make_pod("kube-proxy-gpu02", "gpu02", namespace="kube-system", owner="Node",
                     annotations={"kubernetes.io/config.mirror": "abc"}),
            make_pod("db-0", "gpu02", owner="StatefulSet", labels={"app": "db"}),
            make_pod("elsewhere", "gpu03", owner="ReplicaSet")]
    node = make_node("gpu02", taints=[GPU_TAINT])
    return node, pods


# ---------------------------------------------------------------- Kubernetes


def test_drain_cordons_taints_annotates_and_evicts_all_but_daemonset_and_mirror_pods():
    node, pods = busy_node()
    core = FakeCoreV1([node, make_node("gpu03")], pods, pdbs={("app", "db"): [0]})  # the PDB never allows
    clock = Clock()
    done = kube(core, clock, timeout=30).set_state("gpu02", "drain", "XID 79 GPU3")

    assert node.spec.unschedulable is True
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
        ("nvidia.com/gpu", "present", "NoSchedule"), (NODE_STATE_KEY, "drain", "NoSchedule")]
    assert node.metadata.annotations[NODE_STATE_REASON_ANNOTATION] == "XID 79 GPU3"
    assert (done.state, done.unschedulable, done.reason) == ("drain", True, "XID 79 GPU3")
    assert done.evicted == ["default/web-1"]
    assert done.skipped == {"gpu-operator/dcgm-exporter-x": "DaemonSet pod",
                            "kube-system/kube-proxy-gpu02": "mirror (static) pod"}
    assert done.refused == {"default/db-0": PDB_MESSAGE} and not done.ok
    # retried every 5 s for the 30 s allowed, then reported: bounded
    db_tries = [c for c in core.calls if c[0] == "evict" and c[2] == "db-0"]
    assert len(db_tries) == 7 and clock.now == 30 and clock.sleeps == [5] * 6
    assert ("default", "db-0") in core.pods and ("default", "web-1") not in core.pods
    assert ("default", "elsewhere") not in [(c[1], c[2]) for c in core.calls if c[0] == "evict"]
    # the patch carried the resourceVersion it was computed from (optimistic concurrency)
    patch = next(c for c in core.calls if c[0] == "patch_node")[2]
    assert patch["metadata"]["resourceVersion"] == "1"


def test_a_refused_eviction_succeeds_once_the_budget_allows():
    node, pods = busy_node()
    core = FakeCoreV1([node], pods, pdbs={("app", "db"): [0, 0, 1]})  # a replica became ready elsewhere
    clock = Clock()
    done = kube(core, clock).set_state("gpu02", "drain", "maintenance window")
    assert sorted(done.evicted) == ["default/db-0", "default/web-1"]
    assert done.refused == {} and done.ok
    assert clock.now == 10


def test_down_taints_no_execute_and_replaces_an_earlier_state():
    node = make_node("gpu02", taints=[GPU_TAINT, SimpleNamespace(key=NODE_STATE_KEY, value="drain",
                                                                 effect="NoSchedule", time_added=None)],
                     annotations={NODE_STATE_REASON_ANNOTATION: "old"}, unschedulable=True)
    core = FakeCoreV1([node], [])
    done = kube(core).set_state("gpu02", "down", "PSU failed")
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
        ("nvidia.com/gpu", "present", "NoSchedule"), (NODE_STATE_KEY, "down", "NoExecute")]
    assert (done.state, done.reason, done.ok) == ("down", "PSU failed", True)


def test_resume_uncordons_and_removes_only_our_taint_and_annotation():
    added = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    node = make_node("gpu02", taints=[GPU_TAINT,
                                      SimpleNamespace(key="node.kubernetes.io/unreachable", value=None,
                                                      effect="NoExecute", time_added=added),
                                      SimpleNamespace(key=NODE_STATE_KEY, value="down", effect="NoExecute",
                                                      time_added=added)],
                     annotations={NODE_STATE_REASON_ANNOTATION: "PSU failed", "other": "kept"}, unschedulable=True)
    core = FakeCoreV1([node], [make_pod("web-1", "gpu02", owner="ReplicaSet")])
    done = kube(core).resume("gpu02")
    assert node.spec.unschedulable is False
    assert [(t.key, t.effect) for t in node.spec.taints] == [("nvidia.com/gpu", "NoSchedule"),
                                                            ("node.kubernetes.io/unreachable", "NoExecute")]
    patch = next(c for c in core.calls if c[0] == "patch_node")[2]
    assert patch["spec"]["taints"][1] == {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
                                          "timeAdded": "2025-01-02T03:04:05Z"}
    assert node.metadata.annotations == {"other": "kept"}
    assert (done.state, done.unschedulable, done.reason) == (None, False, "")
    assert not [c for c in core.calls if c[0] == "evict"]  # resume evicts nothing


def test_a_conflicting_change_is_read_again_and_retried():
    node, _ = busy_node()
    core = FakeCoreV1([node], [])
    core.conflicts = 2
    done = kube(core).set_state("gpu02", "drain", "maintenance window")
    assert done.state == "drain"
    assert [c[0] for c in core.calls[:6]] == ["read_node", "patch_node"] * 3


def test_status_and_api_errors():
    node = make_node("gpu02", taints=[SimpleNamespace(key=NODE_STATE_KEY, value="drain", effect="NoSchedule")],
                     annotations={NODE_STATE_REASON_ANNOTATION: "fan"}, unschedulable=True, ready="False")
    core = FakeCoreV1([node], [])
    shown = kube(core).status("gpu02")
    assert (shown.state, shown.reason, shown.unschedulable, shown.ready) == ("drain", "fan", True, "False")
    with pytest.raises(DeployError, match='node gpu09: nodes "gpu09" not found'):
        kube(core).status("gpu09")
    core.down = True
    with pytest.raises(DeployError, match="Kubernetes API unreachable"):
        kube(core).set_state("gpu02", "drain", "fan")


def test_a_pod_gone_before_its_eviction_is_not_an_error():
    node = make_node("gpu02")
    pod = make_pod("web-1", "gpu02", owner="ReplicaSet")
    core = FakeCoreV1([node], [pod])
    core.list_pod_for_all_namespaces = lambda field_selector: SimpleNamespace(
        items=[pod, make_pod("gone", "gpu02", owner="Job")])
    done = kube(core).set_state("gpu02", "drain", "maintenance window")
    assert done.evicted == ["default/web-1"] and done.gone == ["default/gone"] and done.ok


# ---------------------------------------------------------------- hosts, reasons, Slurm commands


def test_hostlists_are_expanded_and_split_by_scheduler():
    cluster = load_stack("dev").cluster
    assert resolve_hosts(cluster, ["gpu[01-02]", "mgmt01", "gpu01"]) == ["gpu01", "gpu02", "mgmt01"]
    assert by_scheduler(cluster, ["gpu01", "gpu02", "mgmt01"]) == {
        "slurm": ["gpu01"], "kubernetes": ["gpu02"], "none": ["mgmt01"]}


@pytest.mark.parametrize(("given", "message"), [
    (["gpu001"], "no host 'gpu001' in dev (did you mean 'gpu01'?)"),
    (["gpu[01-04]"], "no host 'gpu03' in dev"),
    (["gpu[01"], "'gpu[01' is not a hostlist"),
    ([""], "give at least one host"),
])
def test_unknown_hosts_are_refused(given, message):
    with pytest.raises(UsageError) as exc:
        resolve_hosts(load_stack("dev").cluster, given)
    assert message in str(exc.value)
    assert exc.value.exit_code == 2


def test_reasons_follow_the_blueprint_rule():
    assert checked_reason("down", "XID 79 GPU3, RMA 4711") == "XID 79 GPU3, RMA 4711"
    for bad in ("", None, "ab", 'say "hi"', "a # b", "x" * 121):
        with pytest.raises(UsageError):
            checked_reason("drain", bad)


def test_scontrol_commands():
    assert scontrol_update(["gpu01", "gpu02", "gpu04"], "drain", "XID 79 GPU3") == [
        "scontrol", "update", "NodeName=gpu[01-02,04]", "State=DRAIN", "Reason=XID 79 GPU3"]
    assert scontrol_update(["gpu01"], "down", "PSU") == ["scontrol", "update", "NodeName=gpu01", "State=DOWN",
                                                         "Reason=PSU"]
    assert scontrol_update(["gpu01"], "resume") == ["scontrol", "update", "NodeName=gpu01", "State=RESUME"]


# Slurm 22.05's `scontrol show node -o` lines (the test bed's), trimmed of fields in between
SHOW_NODE = (
    "NodeName=gpu01 Arch=x86_64 CoresPerSocket=2 CPUAlloc=0 CPUTot=2 Gres=gpu:h100:8 NodeAddr=gpu01 "
    "State=IDLE+DRAIN ThreadsPerCore=1 Partitions=gpu CfgTRES=cpu=2,mem=3276M,billing=2,gres/gpu=8 AllocTRES= "
    "CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s "
    "Reason=aiinfra test: XID 79 GPU3, Ticket=4711 [root@2025-01-02T03:04:05]\n"
    "NodeName=gpu02 Arch=x86_64 State=MIXED+DRAIN Partitions=gpu Reason=fan [slurm@2025-01-02T03:04:06] "
    "Comment=(null)\n"
    "NodeName=gpu03 Arch=x86_64 State=DOWN+NOT_RESPONDING Partitions=gpu Reason=Not responding "
    "[slurm@2025-01-02T03:04:07]\n"
    "NodeName=gpu04 Arch=x86_64 State=IDLE Partitions=gpu\n"
)


def test_scontrol_show_node_is_parsed_with_free_text_reasons():
    nodes = parse_show_node(SHOW_NODE)
    assert nodes["gpu01"] == SlurmNode("gpu01", "IDLE+DRAIN", "aiinfra test: XID 79 GPU3, Ticket=4711", "root",
                                       "2025-01-02T03:04:05")
    assert [(n.shown, n.out_of_service) for n in nodes.values()] == [
        ("drained", "drain"), ("draining", "drain"), ("down", "down"), ("idle", None)]
    assert nodes["gpu02"].reason == "fan" and nodes["gpu04"].reason == ""


def test_module_result_says_why():
    assert ModuleResult("gpu04", 1, stdout="gpu04: aiinfra-nodecheck: 7 GPUs, GRES says 8\n").why == (
        "gpu04: aiinfra-nodecheck: 7 GPUs, GRES says 8")
    assert ModuleResult("ctl01", 1, stderr="scontrol: error: Invalid node name\n").why.startswith("scontrol: error")
    assert ModuleResult("x", 2).why == "exit 2"


# ---------------------------------------------------------------- the blueprint change


def _testbed(nodes: dict):
    raw = yaml.safe_load(TESTBED.read_text())
    raw["config"]["aiinfra:cluster"]["nodes"] = nodes
    return build_text(yaml.safe_dump(raw), "stacks/Pulumi.testbed.yaml", "testbed").cluster


def test_blueprint_change_adds_a_new_state():
    cluster = _testbed({})
    edits = blueprint_change(cluster, {"gpu02": NodeState(state="down", reason="PSU, RMA 4711"),
                                       "gpu01": NodeState(state="down", reason="PSU, RMA 4711")})
    assert [e.line() for e in edits] == ["add under nodes: gpu[01-02]: {state: down, reason: 'PSU, RMA 4711'}"]


def test_blueprint_change_splits_a_key_when_one_host_comes_back():
    cluster = _testbed({"gpu[01-03]": {"state": "drain", "reason": "firmware update"},
                        "gpu04": {"state": "down", "reason": "PSU"}})
    edits = blueprint_change(cluster, {"gpu02": None})
    assert [e.line() for e in edits] == ["remove nodes: gpu[01-03]",
                                         "add under nodes: gpu[01,03]: {state: drain, reason: firmware update}"]
    assert [e.line() for e in blueprint_change(cluster, {"gpu04": None})] == ["remove nodes: gpu04"]


def test_blueprint_change_is_empty_when_the_blueprint_already_says_so():
    cluster = _testbed({"gpu04": {"state": "down", "reason": "PSU"}})
    assert blueprint_change(cluster, {"gpu04": NodeState(state="down", reason="PSU")}) == []
    assert blueprint_change(cluster, {"gpu01": None}) == []
    # same state, new reason: the key is replaced
    assert [e.line() for e in blueprint_change(cluster, {"gpu04": NodeState(state="down", reason="RMA 9")})] == [
        "remove nodes: gpu04", "add under nodes: gpu04: {state: down, reason: RMA 9}"]


def test_the_printed_change_is_valid_blueprint_yaml():
    cluster = _testbed({})
    edit = blueprint_change(cluster, {"gpu03": NodeState(state="drain", reason="XID 79: GPU3 {bad}, 'x'")})[0]
    entry = yaml.safe_load(edit.line().removeprefix("add under nodes: "))
    assert entry == {"gpu03": {"state": "drain", "reason": "XID 79: GPU3 {bad}, 'x'"}}
    rebuilt = _testbed(entry)
    assert rebuilt.groups["gpu"].states["gpu03"].reason == "XID 79: GPU3 {bad}, 'x'"


# ---------------------------------------------------------------- the command line


def test_cli_refuses_bad_arguments_before_touching_anything(aiinfra, tmp_path):
    r = aiinfra("node", "drain", "gpu001", "--stack", "dev", "--reason", "fan failed")
    assert r.code == 2 and "no host 'gpu001' in dev (did you mean 'gpu01'?)" in r.stderr
    r = aiinfra("node", "down", "gpu01", "--stack", "dev")
    assert r.code == 2 and "down needs --reason TEXT" in r.stderr
    r = aiinfra("node", "resume", "gpu01", "--stack", "dev", "--reason", "fixed")
    assert r.code == 2 and "No such option" in r.stderr + r.stdout
    r = aiinfra("node", "replace", "gpu02", "--stack", "dev")
    assert r.code == 2 and "gpu02 is not" in r.stderr and "aiinfra node resume gpu02" in r.stderr
    r = aiinfra("node", "status", "--stack", "dev")
    assert r.code == 2 and "Missing argument" in r.stderr + r.stdout


def test_cli_without_a_kubernetes_client_or_cluster_says_so(aiinfra, monkeypatch, tmp_path):
    # gpu02 of dev is a Kubernetes node; no kubeconfig can reach an API server here
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    r = aiinfra("node", "status", "gpu02", "--stack", "dev")
    assert r.code == 1
    assert ("Kubernetes Python client is not installed" in r.stderr or "kubeconfig" in r.stderr), r.stderr
    assert "Traceback" not in r.stderr


def test_a_decommissioned_host_is_refused_by_name():
    cluster = _testbed({"gpu04": {"state": "decommissioned", "reason": "end of life"}})
    with pytest.raises(UsageError) as exc:
        resolve_hosts(cluster, ["gpu[03-04]"])
    assert "gpu04 is decommissioned" in str(exc.value) and exc.value.exit_code == 2
    assert resolve_hosts(cluster, ["gpu03"]) == ["gpu03"]


# ---------------------------------------------------------------- the command line against a stand-in scontrol

# `aiinfra node ... --local` runs scontrol on this machine. This stand-in keeps a node table in a
# JSON file and answers the two calls the command makes, in the shape of Slurm's own output
# (`scontrol show node -o`: one line per node, the reason followed by [user@time]); a node not in
# the table is refused as scontrol refuses it. Real scontrol runs in tests/slurm/test_node_cli.py.
FAKE_SCONTROL = """#!{python}
import json, os, sys
from ClusterShell.NodeSet import NodeSet
table = os.environ["FAKE_SLURM_TABLE"]
nodes = json.load(open(table))
args = sys.argv[1:]
if args[:1] == ["update"]:
    opts = dict(a.split("=", 1) for a in args[1:])
    for n in NodeSet(opts["NodeName"]):
        if n not in nodes:
            sys.exit("scontrol: error: Invalid node name specified")
        state = {{"DRAIN": "IDLE+DRAIN", "DOWN": "DOWN", "RESUME": "IDLE"}}[opts["State"]]
        nodes[n] = {{"state": state, "reason": opts.get("Reason", "")}}
    json.dump(nodes, open(table, "w"))
elif args[:3] == ["show", "node", "-o"]:
    for n in NodeSet(args[3]):
        if n in nodes:
            s = nodes[n]
            reason = f" Reason={{s['reason']}} [root@2025-01-02T03:04:05]" if s["reason"] else ""
            print(f"NodeName={{n}} Arch=x86_64 State={{s['state']}} Partitions=gpu{{reason}} Comment=(null)")
else:
    sys.exit(f"stand-in scontrol: {{args}} not emulated")
"""


@pytest.fixture
def local_slurm(tmp_path, monkeypatch):
    """A project root with the test bed's blueprint (``nodes:`` as given) and the stand-in scontrol on PATH."""
    root = tmp_path / "root"
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text((TESTBED.parents[1] / "Pulumi.yaml").read_text())
    bindir = tmp_path / "bin"
    bindir.mkdir()
    scontrol = bindir / "scontrol"
    scontrol.write_text(FAKE_SCONTROL.format(python=sys.executable))
    scontrol.chmod(0o755)
    table = tmp_path / "nodes.json"
    monkeypatch.setenv("FAKE_SLURM_TABLE", str(table))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AIINFRA_ROOT", str(root))
    monkeypatch.setenv("COLUMNS", "200")

    def setup(blueprint_nodes: dict, slurm: dict[str, tuple[str, str]]):
        raw = yaml.safe_load(TESTBED.read_text())
        raw["config"]["aiinfra:cluster"]["nodes"] = blueprint_nodes
        (root / "stacks" / "Pulumi.testbed.yaml").write_text(yaml.safe_dump(raw))
        table.write_text(json.dumps({n: {"state": s, "reason": r} for n, (s, r) in slurm.items()}))
        return lambda: {n: (v["state"], v["reason"]) for n, v in json.loads(table.read_text()).items()}

    return setup


def _printed_changes(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if line.strip().startswith(("add under nodes:", "remove nodes:"))]


def test_cli_drain_acts_and_prints_the_blueprint_change(aiinfra, local_slurm):
    idle = ("IDLE", "")
    slurm = local_slurm({}, {"gpu01": idle, "gpu02": idle, "gpu03": idle, "gpu04": idle})
    r = aiinfra("node", "drain", "gpu[01-02]", "--stack", "testbed", "--local", "--reason", "XID 79: GPU3, RMA 4711")
    assert r.code == 0, r.stdout + r.stderr
    assert slurm() == {"gpu01": ("IDLE+DRAIN", "XID 79: GPU3, RMA 4711"), "gpu02": ("IDLE+DRAIN", "XID 79: GPU3, RMA 4711"),
                       "gpu03": idle, "gpu04": idle}
    rows = {re.search(r"gpu\d+", line).group(): line for line in r.stdout.splitlines() if re.search(r"gpu\d+\s", line)}
    assert "drained" in rows["gpu01"] and "XID 79: GPU3, RMA 4711" in rows["gpu01"], r.stdout
    (change,) = _printed_changes(r.stdout)
    entry = yaml.safe_load(change.removeprefix("add under nodes: "))
    assert entry == {"gpu[01-02]": {"state": "drain", "reason": "XID 79: GPU3, RMA 4711"}}
    # committed as printed, the blueprint is valid and records what Slurm now shows
    assert _testbed(entry).groups["gpu"].states["gpu02"].state == "drain"


def test_cli_resume_prints_the_removal_and_status_names_the_difference(aiinfra, local_slurm):
    slurm = local_slurm({"gpu[02-03]": {"state": "down", "reason": "PSU, RMA 4711"}},
                        {"gpu01": ("IDLE", ""), "gpu02": ("DOWN", "PSU, RMA 4711"), "gpu03": ("DOWN", "PSU, RMA 4711")})
    r = aiinfra("node", "resume", "gpu02", "--stack", "testbed", "--local")
    assert r.code == 0, r.stdout + r.stderr
    assert slurm()["gpu02"] == ("IDLE", "") and slurm()["gpu03"] == ("DOWN", "PSU, RMA 4711")
    changes = _printed_changes(r.stdout)
    assert changes[0] == "remove nodes: gpu[02-03]"
    assert yaml.safe_load(changes[1].removeprefix("add under nodes: ")) == {
        "gpu03": {"state": "down", "reason": "PSU, RMA 4711"}}

    r = aiinfra("node", "status", "gpu[01-03]", "--stack", "testbed", "--local", "--json")
    assert r.code == 0, r.stdout + r.stderr
    rows = {row["host"]: row for row in json.loads(r.stdout)["nodes"]}
    assert [(rows[h]["state"], rows[h]["blueprint"]) for h in ("gpu01", "gpu02", "gpu03")] == [
        ("idle", "in service"), ("idle", "down"), ("down", "down")]
    assert rows["gpu03"]["reason"] == "PSU, RMA 4711" and rows["gpu03"]["set_by"].startswith("root ")
    r = aiinfra("node", "status", "gpu[01-03]", "--stack", "testbed", "--local")
    assert r.code == 0 and "differs from" in r.stdout and "gpu02" in r.stdout.split("differs from")[1], r.stdout

    # the blueprint already says so: nothing to commit
    r = aiinfra("node", "down", "gpu03", "--stack", "testbed", "--local", "--reason", "PSU, RMA 4711")
    assert r.code == 0 and not _printed_changes(r.stdout) and "nothing to commit" in r.stdout, r.stdout


def test_cli_exit_codes(aiinfra, local_slurm):
    local_slurm({"gpu04": {"state": "decommissioned", "reason": "end of life"}},
                {"gpu01": ("IDLE", ""), "gpu02": ("IDLE", "")})  # gpu03 missing from Slurm's table
    r = aiinfra("node", "drain", "gpu04", "--stack", "testbed", "--local", "--reason", "fan")
    assert r.code == 2 and "gpu04 is decommissioned" in r.stderr, r.stderr
    r = aiinfra("node", "drain", "gpu05", "--stack", "testbed", "--local", "--reason", "fan")
    assert r.code == 2 and "no host 'gpu05' in testbed (did you mean" in r.stderr, r.stderr
    r = aiinfra("node", "drain", "gpu01", "--stack", "testbed", "--local", "--reason", 'fan "loud"')
    assert r.code == 2 and "--reason" in r.stderr, r.stderr
    # Slurm refuses: exit 1, what scontrol said, no traceback
    r = aiinfra("node", "drain", "gpu[01,03]", "--stack", "testbed", "--local", "--reason", "fan")
    assert r.code == 1 and "Invalid node name" in r.stderr and "Traceback" not in r.stderr, r.stderr
    # replace takes only nodes that are out of service
    r = aiinfra("node", "replace", "gpu01", "--stack", "testbed", "--local", "--skip-gpu-tests", "--render")
    assert r.code == 2 and "in service in Slurm" in r.stderr, r.stdout + r.stderr


# ---------------------------------------------------------------- replace: the gate's steps


class ScriptedRemote:
    """Answers ``Remote.on`` per program (argv[0]) with a ModuleResult, and records the calls."""

    def __init__(self, cluster, answers):
        self.cluster, self.answers, self.calls = cluster, answers, []
        self.extra_vars, self.inventories = [], []

    def on(self, host, argv, timeout_s=None):
        self.calls.append((host, argv))
        return self.answers[argv[0]]


def _diag(ok: bool, failed=(), message="passed", rc=None) -> ModuleResult:
    out = json.dumps({"ok": ok, "level": 2, "failed_gpus": list(failed), "message": message, "time": 1})
    return ModuleResult("gpu03", (0 if ok else 1) if rc is None else rc, stdout=out + "\n")


def test_the_gpu_health_probe_is_the_dcgm_roles():
    from aiinfra.deploy.nodes import GPU_HEALTH_PROBE

    defaults = yaml.safe_load((ROOT / "roles" / "dcgm" / "defaults" / "main.yml").read_text())
    assert defaults["dcgm_health_probe"] == GPU_HEALTH_PROBE


def test_the_gate_stops_at_the_first_failure(tmp_path):
    from aiinfra.deploy.nodes import GPU_HEALTH_PROBE, Controller, replace_gate
    from aiinfra.render.slurm import HOST_SETTINGS

    cluster = _testbed({})
    healthy = ModuleResult("gpu03", 0, stdout="gpu03: healthy\n")
    sick = ModuleResult("gpu03", 1, stdout="gpu03: aiinfra-nodecheck: 7 GPUs, GRES says 8\n")
    check = HOST_SETTINGS.health_check_program

    remote = ScriptedRemote(cluster, {check: sick})
    steps = replace_gate(cluster, tmp_path, Controller(remote), "gpu03", "r1", None)
    assert [(s.name, s.passed, s.detail) for s in steps] == [
        ("health check", False, "gpu03: aiinfra-nodecheck: 7 GPUs, GRES says 8")]
    assert remote.calls == [("gpu03", [check, "--dry-run", "--node", "gpu03"])]

    remote = ScriptedRemote(cluster, {check: healthy, GPU_HEALTH_PROBE: _diag(False, [3], "Memory test failed on GPU 3")})
    steps = replace_gate(cluster, tmp_path, Controller(remote), "gpu03", "r1", None)
    assert [(s.name, s.passed) for s in steps] == [("health check", True), ("dcgmi diag -r 2", False)]
    assert steps[1].detail == "GPU 3 failed: Memory test failed on GPU 3"
    assert remote.calls[1] == ("gpu03", [GPU_HEALTH_PROBE, "diag", "-r", "2"])

    # a diagnostic that exits 0 but says not ok, or prints nothing readable, is no pass
    for answer in (_diag(False, rc=0, message="dcgmi diag did not finish"), ModuleResult("gpu03", 0, stdout="")):
        remote = ScriptedRemote(cluster, {check: healthy, GPU_HEALTH_PROBE: answer})
        assert replace_gate(cluster, tmp_path, Controller(remote), "gpu03", "r1", None)[1].passed is False

    # the diagnostic passes; without a rendered acceptance job the nccl-tests step cannot pass
    remote = ScriptedRemote(cluster, {check: healthy, GPU_HEALTH_PROBE: _diag(True)})
    steps = replace_gate(cluster, tmp_path, Controller(remote), "gpu03", "r1", None)
    assert [(s.name, s.passed) for s in steps] == [
        ("health check", True), ("dcgmi diag -r 2", True), ("nccl-tests (node)", False)]
    assert "no rendered acceptance job for gpu03" in steps[2].detail

    # no GPU tests: said so, the health check still runs
    remote = ScriptedRemote(cluster, {check: healthy})
    steps = replace_gate(cluster, tmp_path, Controller(remote), "gpu03", "r1", "--skip-gpu-tests given")
    assert [(s.name, s.passed, s.detail) for s in steps] == [
        ("health check", True, "gpu03: healthy"), ("dcgmi diag -r 2", None, "--skip-gpu-tests given"),
        ("nccl-tests (node)", None, "--skip-gpu-tests given")]
