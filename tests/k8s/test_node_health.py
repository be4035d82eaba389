"""One health signal, both schedulers: the Slurm node health check on Kubernetes GPU nodes.

The script the DaemonSet runs (taken from the rendered ConfigMap, which must be the slurm role's
file) runs for real against an API server in the test: a small HTTP server holding one Node that
applies JSON patches (RFC 6902, with ``test``) and strategic merge patches of the status'
conditions, and answers 422 when a ``test`` fails, as the API server does
(k8s.io/apiserver endpoints/handlers/patch.go). Its probes are the rendered ones with ``/host``
moved to a fake host tree.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from aiinfra.catalog.k8s_resources import (
    GPU_RESOURCE,
    NODE_GROUP_LABEL,
    NODE_HEALTH_CONDITION,
    NODE_STATE_EFFECT,
    NODE_STATE_KEY,
    NODE_STATE_REASON_ANNOTATION,
    NODECHECK_IMAGE_KEY,
)
from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data
from aiinfra.render.k8s_health import interval_s, node_health_config
from aiinfra.render.k8s_topology import GPU_TAINT, node_taints
from aiinfra.render.slurm import node_check_group, node_checks
from conftest import ROOT, load_stack, render
from k8s_schema import validate_object

SCRIPT = ROOT / "roles" / "slurm" / "files" / "aiinfra-nodecheck"
TOKEN = "t0ken-of-the-test"
NODE = "gpu02"  # dev's Kubernetes GPU node
OUR_TAINT = {"key": NODE_STATE_KEY, "value": "drain", "effect": NODE_STATE_EFFECT["drain"]}


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def blueprint(env: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())["config"]["aiinfra:cluster"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, list[dict]]]:
    """env -> file of k8s/node-health/ -> its objects."""
    out = {}
    for env in ("dev", "prod"):
        files = render(load_stack(env), only=["k8s-node-health"])
        out[env] = {p.removeprefix("k8s/node-health/"): docs(t) for p, t in files.items()}
    return out


def config_map(rendered: dict, env: str) -> dict:
    (cm,) = rendered[env]["configmap.yaml"]
    return cm


def daemon_set(rendered: dict, env: str) -> dict:
    (ds,) = rendered[env]["daemonset.yaml"]
    return ds


# ------------------------------------------------------------------ a Kubernetes API server for one node

class PatchFailed(Exception):
    pass


def _parent(doc: dict, pointer: str) -> tuple[object, str | int]:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node: object = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    last: str | int = parts[-1]
    if isinstance(node, list):
        last = len(node) if last == "-" else int(last)
    return node, last


def apply_json_patch(doc: dict, ops: list[dict]) -> dict:
    """RFC 6902 add / remove / replace / test, all or nothing."""
    out = copy.deepcopy(doc)
    try:
        for op in ops:
            parent, key = _parent(out, op["path"])
            if op["op"] == "test":
                if parent[key] != op["value"]:  # type: ignore[index]
                    raise PatchFailed(f"test failed at {op['path']}")
            elif op["op"] == "add":
                if isinstance(parent, list):
                    parent.insert(int(key), op["value"])
                else:
                    parent[key] = op["value"]  # type: ignore[index]
            elif op["op"] == "replace":
                parent[key]  # type: ignore[index]  # must exist
                parent[key] = op["value"]  # type: ignore[index]
            elif op["op"] == "remove":
                del parent[key]  # type: ignore[arg-type]
            else:
                raise PatchFailed(f"unknown op {op['op']}")
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise PatchFailed(f"{exc.__class__.__name__}: {exc}") from None
    return out


class FakeApiServer:
    """GET/PATCH /api/v1/nodes/<name> and PATCH .../status, with a bearer token, recording patches."""

    def __init__(self, node: dict):
        self.node = node
        self.patches: list[tuple[str, str, object]] = []  # (path, content type, body)
        self.fail_gets = 0  # answer this many GETs with 500
        self.before_spec_patch = None  # called once before the next JSON patch (a concurrent writer)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def route(self) -> str | None:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self.reply(401, {"kind": "Status", "message": "Unauthorized"})
                    return None
                name = server.node["metadata"]["name"]
                if self.path not in (f"/api/v1/nodes/{name}", f"/api/v1/nodes/{name}/status"):
                    self.reply(404, {"kind": "Status", "message": f"{self.path} not found"})
                    return None
                return "status" if self.path.endswith("/status") else "node"

            def do_GET(self):
                if self.route() is None:
                    return
                with server.lock:
                    if server.fail_gets:
                        server.fail_gets -= 1
                        self.reply(500, {"kind": "Status", "message": "etcdserver: request timed out"})
                        return
                    self.reply(200, server.node)

            def do_PATCH(self):
                what = self.route()
                if what is None:
                    return
                kind = self.headers.get("Content-Type", "")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.patches.append((self.path, kind, body))
                    try:
                        if what == "node" and kind == "application/json-patch+json":
                            if server.before_spec_patch is not None:
                                hook, server.before_spec_patch = server.before_spec_patch, None
                                hook(server.node)
                            updated = apply_json_patch(server.node, body)
                        elif what == "status" and kind == "application/strategic-merge-patch+json":
                            assert set(body) == {"status"} and set(body["status"]) == {"conditions"}, body
                            updated = copy.deepcopy(server.node)
                            conditions = updated["status"].setdefault("conditions", [])
                            for new in body["status"]["conditions"]:  # patchMergeKey: type
                                old = next((c for c in conditions if c["type"] == new["type"]), None)
                                if old is None:
                                    conditions.append(new)
                                else:
                                    old.update(new)
                        else:
                            self.reply(415, {"kind": "Status", "message": f"unsupported patch type {kind}"})
                            return
                    except PatchFailed as exc:
                        self.reply(422, {"kind": "Status", "message": str(exc)})
                        return
                    rv = int(server.node["metadata"]["resourceVersion"]) + 1
                    updated["metadata"]["resourceVersion"] = str(rv)
                    server.node = updated
                    self.reply(200, server.node)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # what the tests read
    @property
    def taints(self) -> list[dict]:
        return self.node["spec"].get("taints") or []

    @property
    def annotations(self) -> dict:
        return self.node["metadata"].get("annotations") or {}

    def condition(self, kind: str = NODE_HEALTH_CONDITION) -> dict | None:
        return next((c for c in self.node["status"]["conditions"] if c["type"] == kind), None)


def a_node(annotations: dict | None = None, taints: list[dict] | None = None) -> dict:
    meta: dict = {"name": NODE, "resourceVersion": "100", "labels": {NODE_GROUP_LABEL: "gpu-serve"}}
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta,
            "spec": {"taints": copy.deepcopy(taints if taints is not None else [GPU_TAINT])},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status"}]}}


@pytest.fixture
def api():
    servers: list[FakeApiServer] = []

    def start(node: dict) -> FakeApiServer:
        servers.append(FakeApiServer(node))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


# ------------------------------------------------------------------ a fake host, seen through the pod's mounts

class FakeHost:
    """The host paths the pod mounts under /host, as the rendered probes name them, in a folder."""

    def __init__(self, root: Path, cm: dict):
        self.root = root
        self.dir = root / "etc"
        self.dir.mkdir(parents=True)
        config = json.loads(cm["data"]["nodecheck.json"])
        (self.expect,) = [g for g in config["groups"] if g["group"] == "gpu-serve"]
        probes = {k: v.replace("/host/", f"{root}/host/", 1) if isinstance(v, str) else v
                  for k, v in json.loads(cm["data"]["nodecheck-probes.json"]).items()}
        self.probes = probes
        (self.dir / "aiinfra-nodecheck").write_text(cm["data"]["aiinfra-nodecheck"])
        (self.dir / "nodecheck.json").write_text(cm["data"]["nodecheck.json"])
        (self.dir / "nodecheck-probes.json").write_text(json.dumps(probes))
        (root / "token").write_text(TOKEN + "\n")
        self.devices = Path(probes["gpu_devices_dir"])
        self.devices.mkdir(parents=True)
        for extra in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "null"):  # not GPUs
            (self.devices / extra).touch()
        self.gpus(self.expect["gpus"])
        for hca in self.expect["hcas"]:
            self.hca(hca, "4: ACTIVE", f"{self.expect['hca_rate_gbps']} Gb/sec (4X NDR)")
        mounts = Path(probes["mounts_file"])
        mounts.parent.mkdir(parents=True)
        mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\n10.12.0.250@o2ib:/devfs {self.expect['lustre_mountpoint']} "
                          "lustre rw,flock 0 0\n")

    def gpus(self, count: int) -> None:
        for f in self.devices.glob("nvidia[0-9]*"):
            f.unlink()
        for i in range(count):
            (self.devices / f"nvidia{i}").touch()

    def hca(self, name: str, state: str, rate: str) -> None:
        port = Path(self.probes["infiniband_dir"]) / name / "ports" / str(self.probes["hca_port"])
        port.mkdir(parents=True, exist_ok=True)
        (port / "state").write_text(state + "\n")
        (port / "rate").write_text(rate + "\n")

    def command(self, server: FakeApiServer, *extra: str) -> list[str]:
        return [sys.executable, str(self.dir / "aiinfra-nodecheck"), "--kubernetes",
                "--config", str(self.dir / "nodecheck.json"), "--probes", str(self.dir / "nodecheck-probes.json"),
                "--api-url", server.url, "--token-file", str(self.root / "token"), "--node", NODE, *extra]

    def check(self, server: FakeApiServer) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(server), capture_output=True, text=True, timeout=60)


@pytest.fixture
def host(tmp_path, rendered) -> FakeHost:
    return FakeHost(tmp_path, config_map(rendered, "dev"))


# ------------------------------------------------------------------ the script against the API server

@pytest.mark.parametrize("annotations", [None, {"node.alpha.kubernetes.io/ttl": "0"}],
                         ids=["no-annotations", "kubeadm-annotations"])
def test_a_lost_gpu_drains_the_node_and_recovery_lifts_the_drain(api, host, annotations):
    server = api(a_node(annotations))
    host.gpus(7)
    r = host.check(server)
    assert r.returncode == 1, r.stderr
    reason = "aiinfra-nodecheck: 7 GPUs, expected 8"
    assert server.taints == [GPU_TAINT, OUR_TAINT]
    assert server.annotations == {**(annotations or {}), NODE_STATE_REASON_ANNOTATION: reason}
    failed = server.condition()
    assert (failed["status"], failed["reason"], failed["message"]) == ("False", "NodeCheckFailed", reason)
    assert server.condition("Ready")["status"] == "True"  # the kubelet's conditions stay
    spec_patch = next(body for path, kind, body in server.patches if kind == "application/json-patch+json")
    assert spec_patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "100"}

    r = host.check(server)  # still failing: nothing more to change on the node
    assert r.returncode == 1
    assert server.taints == [GPU_TAINT, OUR_TAINT]
    assert server.condition()["lastTransitionTime"] == failed["lastTransitionTime"]

    host.gpus(8)
    r = host.check(server)
    assert r.returncode == 0, r.stderr
    assert server.taints == [GPU_TAINT]
    assert server.annotations == (annotations or {})
    healthy = server.condition()
    assert (healthy["status"], healthy["reason"]) == ("True", "NodeCheckPassed")
    assert healthy["lastTransitionTime"] >= failed["lastTransitionTime"]
    assert [c["type"] for c in server.node["status"]["conditions"]] == ["Ready", NODE_HEALTH_CONDITION]


def _load(path: Path, name: str):
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_pod_reads_the_gpu_health_the_dcgm_role_writes(rendered):
    """The state file of the dcgm role's probe (the GPU count Slurm's check gets from
    `aiinfra-gpu-health slurm-gpus`) is where the pod looks."""
    dcgm = _load(ROOT / "roles" / "dcgm" / "files" / "aiinfra-gpu-health", "aiinfra_gpu_health")
    probes = json.loads(config_map(rendered, "dev")["data"]["nodecheck-probes.json"])
    assert probes["gpu_health_file"] == "/host" + dcgm.DEFAULTS["state_dir"] + "/gpu-health.json"


@pytest.mark.parametrize("state, age_s, reason", [
    ({"status": "FAIL", "message": "DCGM: GPU 3: Failure", "gpus": list(range(8)), "unhealthy": [3]}, 30,
     "aiinfra-nodecheck: 7 GPUs, expected 8 (DCGM: GPU 3: Failure)"),
    ({"status": "FAIL", "message": "DCGM diag level 1 failed", "gpus": list(range(8)), "unhealthy": []}, 30,
     "aiinfra-nodecheck: GPU probe failed (DCGM diag level 1 failed)"),
    ({"status": "OK", "message": "7 GPUs healthy (DCGM: Healthy)", "gpus": list(range(7)), "unhealthy": []}, 30,
     "aiinfra-nodecheck: 7 GPUs, expected 8"),  # one fell off the bus: nvidia-smi no longer lists it
    ({"status": "UNKNOWN", "message": "DCGM does not answer; 8 GPUs seen by nvidia-smi", "gpus": list(range(8)),
      "unhealthy": []}, 30, None),  # a monitoring outage does not drain
    ({"status": "FAIL", "message": "DCGM: GPU 3: Failure", "gpus": list(range(8)), "unhealthy": [3]}, 3600,
     None),  # stale (the timer stopped): the 8 device files count
], ids=["unhealthy-gpu", "failed-diag", "lost-gpu", "dcgm-down", "stale"])
def test_the_dcgm_health_state_counts_the_healthy_gpus(api, host, state, age_s, reason):
    health = Path(host.probes["gpu_health_file"])
    health.parent.mkdir(parents=True, exist_ok=True)
    health.write_text(json.dumps({**state, "time": int(time.time()) - age_s}))
    server = api(a_node())
    r = host.check(server)
    assert r.returncode == (1 if reason else 0), r.stdout + r.stderr
    assert server.annotations.get(NODE_STATE_REASON_ANNOTATION) == reason
    assert server.condition()["status"] == ("False" if reason else "True")


def test_the_annotation_holds_the_reason_slurm_drains_with(api, host):
    """One reason string on both sides: the Slurm mode's, for the same probes."""
    module = _load(host.dir / "aiinfra-nodecheck", "nodecheck_k8s")
    host.hca("mlx5_3", "1: DOWN", "400 Gb/sec (4X NDR)")
    host.hca("mlx5_5", "4: ACTIVE", "200 Gb/sec (4X HDR)")
    (Path(host.probes["mounts_file"])).write_text("/dev/sda1 / ext4 rw 0 0\n")
    probes = module.probe_settings(str(host.dir / "nodecheck-probes.json"), NODE)
    slurm_reason = module.reason_of(module.problems_of(host.expect, probes))
    assert slurm_reason == ("aiinfra-nodecheck: mlx5_3 port DOWN; mlx5_5 at 200 Gb/s, expected 400; "
                            "Lustre not mounted at /lustre")
    server = api(a_node())
    assert host.check(server).returncode == 1
    assert server.annotations[NODE_STATE_REASON_ANNOTATION] == slurm_reason
    assert server.condition()["message"] == slurm_reason


@pytest.mark.parametrize("state, effect", [("drain", "NoSchedule"), ("down", "NoExecute")])
def test_an_operators_drain_and_its_reason_stay(api, host, state, effect):
    theirs = {"key": NODE_STATE_KEY, "value": state, "effect": effect}
    server = api(a_node({NODE_STATE_REASON_ANNOTATION: "RMA 4711: fan tray"}, [GPU_TAINT, theirs]))
    host.gpus(6)
    r = host.check(server)
    assert r.returncode == 1
    assert "set by someone else (RMA 4711: fan tray)" in r.stdout
    assert server.taints == [GPU_TAINT, theirs]
    assert server.annotations == {NODE_STATE_REASON_ANNOTATION: "RMA 4711: fan tray"}
    assert server.condition()["status"] == "False"  # the condition still tells what the check saw
    assert not [p for p in server.patches if p[1] == "application/json-patch+json"]

    host.gpus(8)
    assert host.check(server).returncode == 0
    assert server.taints == [GPU_TAINT, theirs]  # healthy, but not this check's drain to lift
    assert server.annotations == {NODE_STATE_REASON_ANNOTATION: "RMA 4711: fan tray"}
    assert server.condition()["status"] == "True"


def test_a_down_taint_under_a_stale_check_reason_is_not_lifted(api, host):
    """The annotation is the check's, but an operator set the node down since: not its drain."""
    down = {"key": NODE_STATE_KEY, "value": "down", "effect": "NoExecute"}
    server = api(a_node({NODE_STATE_REASON_ANNOTATION: "aiinfra-nodecheck: 7 GPUs, expected 8"}, [GPU_TAINT, down]))
    assert host.check(server).returncode == 0
    assert server.taints == [GPU_TAINT, down]


def test_a_concurrent_taint_edit_is_kept(api, host):
    """Taints are one atomic list: the patch tests the resourceVersion, fails (422) when someone
    edited the node meanwhile, and the check reads the node again instead of overwriting it."""
    server = api(a_node())
    other = {"key": "example.org/maintenance", "value": "bios", "effect": "NoSchedule"}

    def concurrent_writer(node: dict) -> None:
        node["spec"]["taints"].append(other)
        node["metadata"]["resourceVersion"] = str(int(node["metadata"]["resourceVersion"]) + 1)

    server.before_spec_patch = concurrent_writer
    host.gpus(7)
    r = host.check(server)
    assert r.returncode == 1, r.stderr
    assert server.taints == [GPU_TAINT, other, OUR_TAINT]
    assert len([p for p in server.patches if p[1] == "application/json-patch+json"]) == 2  # refused, then done


def test_the_loop_outlives_an_api_error_and_keeps_the_heartbeat(api, host):
    server = api(a_node())
    server.fail_gets = 1
    proc = subprocess.Popen(host.command(server, "--interval", "0.2"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with server.lock:
                beats = [b for p, _, b in server.patches if p.endswith("/status")]
            if len(beats) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        assert len(beats) >= 2
        stamps = [b["status"]["conditions"][0]["lastHeartbeatTime"] for b in beats]
        assert all(s.endswith("Z") for s in stamps)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "could not update the node: HTTP 500: etcdserver: request timed out" in err


def test_a_wrong_token_is_an_error_not_a_drain(api, host):
    server = api(a_node())
    (host.root / "token").write_text("not-the-token")
    r = host.check(server)
    assert r.returncode == 2
    assert "HTTP 401: Unauthorized" in r.stderr
    assert server.taints == [GPU_TAINT] and server.condition() is None


def test_slurm_mode_is_unchanged_by_the_kubernetes_mode(tmp_path):
    """Without --kubernetes the script drains through scontrol, as before (a fake scontrol)."""
    log = tmp_path / "calls"
    fake = tmp_path / "scontrol"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    fake.chmod(0o755)
    (tmp_path / "gpus").write_text("0\n1\n")
    config = {"cluster": "x", "groups": [{"group": "g", "nodes": "n[1-2]", "gpus": 4, "gres": "gpu:h100:4",
                                          "hcas": [], "lustre_mountpoint": None}]}
    (tmp_path / "nodecheck.json").write_text(json.dumps(config))
    (tmp_path / "probes.json").write_text(json.dumps({"gpu_count_command": f"cat {tmp_path / 'gpus'}",
                                                      "scontrol": str(fake)}))
    r = subprocess.run([sys.executable, str(SCRIPT), "--config", str(tmp_path / "nodecheck.json"),
                        "--probes", str(tmp_path / "probes.json"), "--node", "n2"], capture_output=True, text=True)
    assert r.returncode == 1
    assert log.read_text().splitlines() == ["update NodeName=n2 State=DRAIN Reason=aiinfra-nodecheck: 2 GPUs, GRES says 4"]


# ------------------------------------------------------------------ what is rendered

def test_the_configmap_carries_the_slurm_roles_script_itself(rendered):
    for env in ("dev", "prod"):
        assert config_map(rendered, env)["data"]["aiinfra-nodecheck"] == SCRIPT.read_text()


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_config_is_node_checks_of_the_kubernetes_gpu_groups_with_the_catalogs_names(rendered, env):
    built = load_stack(env)
    config = json.loads(config_map(rendered, env)["data"]["nodecheck.json"])
    groups = [g for g in built.cluster.groups_for_scheduler("kubernetes") if g.gpu is not None]
    assert groups
    assert config == node_health_config(built.cluster)
    assert config["groups"] == [node_check_group(built.cluster, g) for g in groups]
    assert all(g["gres"] is None and g["gpus"] == 8 for g in config["groups"])  # Kubernetes has no GRES
    assert config["kubernetes"] == {
        "condition_type": NODE_HEALTH_CONDITION, "taint_key": NODE_STATE_KEY, "taint_value": "drain",
        "taint_effect": NODE_STATE_EFFECT["drain"], "reason_annotation": NODE_STATE_REASON_ANNOTATION}
    # the blueprint's drained nodes carry the same taint (the kubernetes role, `nodes:` section)
    assert OUR_TAINT["effect"] == NODE_STATE_EFFECT["drain"]
    # the Slurm file keeps the Slurm groups only, and the same entries for them
    slurm = node_checks(built.cluster)["groups"]
    assert {g["group"] for g in slurm} == {g.name for g in built.cluster.groups_for_scheduler("slurm")}
    assert not {g["group"] for g in slurm} & {g["group"] for g in config["groups"]}


def test_prod_config_covers_the_serving_su(rendered):
    config = json.loads(config_map(rendered, "prod")["data"]["nodecheck.json"])
    (group,) = config["groups"]
    assert group == {"group": "gpu-serve", "nodes": "gpu[481-512]", "gpus": 8, "gres": None,
                     "hcas": [f"mlx5_{i}" for i in range(8)], "hca_rate_gbps": 400, "lustre_mountpoint": "/lustre"}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_rendered_objects_are_valid_against_the_official_schemas(rendered, env):
    pytest.importorskip("kubernetes_validate")
    version = load_stack(env).cluster.blueprint.versions.kubernetes
    objects = [o for f, objs in rendered[env].items() if f != "kustomization.yaml" for o in objs]
    assert {o["kind"] for o in objects} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                                            "DaemonSet"}
    problems = [p for o in objects for p in validate_object(o, version)]
    assert not problems, "\n".join(problems)


def test_the_daemonset_runs_on_every_kubernetes_gpu_node_and_stays_on_drained_ones(rendered):
    built = load_stack("prod")
    pod = daemon_set(rendered, "prod")["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (expr,) = term["matchExpressions"]
    assert (expr["key"], expr["operator"], expr["values"]) == (NODE_GROUP_LABEL, "In", ["gpu-serve"])
    nodes = yaml.safe_load(render(built, only=["k8s-hosts"])["k8s-hosts/nodes.yaml"])
    selected = sorted(n for n, reg in nodes.items() if reg["labels"].get(NODE_GROUP_LABEL) in expr["values"])
    assert selected == list(built.cluster.groups["gpu-serve"].hosts)

    def tolerated(taint: dict) -> bool:
        return any(t["key"] == taint["key"] and t["operator"] == "Exists" and t.get("effect") in (None, taint["effect"])
                   for t in pod["tolerations"])

    for name in selected:  # every registered taint, the blueprint's down node (NoExecute) included
        assert all(tolerated(t) for t in node_taints(built.cluster, name)), name
    assert tolerated(OUR_TAINT) and tolerated({"key": NODE_STATE_KEY, "effect": "NoExecute"})
    assert pod["priorityClassName"] == "system-node-critical"


def test_the_pod_requests_no_gpu_and_reads_the_host_read_only(rendered):
    ds = daemon_set(rendered, "prod")
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert GPU_RESOURCE not in json.dumps(container["resources"])
    assert container["image"] == load_stack("prod").cluster.blueprint.versions.images[NODECHECK_IMAGE_KEY]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert all(m["readOnly"] for m in container["volumeMounts"])
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert sorted(host_paths.values()) == ["/dev", "/proc/1/mounts", "/run/aiinfra", "/sys"]
    # every path the probes read is inside a mount of the pod
    probes = json.loads(config_map(rendered, "prod")["data"]["nodecheck-probes.json"])
    inside = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in host_paths]
    for key in ("gpu_health_file", "gpu_devices_dir", "infiniband_dir", "mounts_file"):
        assert any(probes[key] == m or probes[key].startswith(m + "/") for m in inside), key
    # and the command runs the ConfigMap's script with the ConfigMap's files, as the fake host did
    command = container["command"]
    assert command[:3] == ["python3", "/etc/aiinfra-nodecheck/aiinfra-nodecheck", "--kubernetes"]
    assert command[command.index("--interval") + 1] == str(interval_s(load_stack("prod").cluster)) == "300"
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["NODE_NAME"] == "spec.nodeName"


def test_a_new_script_rolls_the_pods_and_a_new_node_does_not(rendered):
    key = "aiinfra.io/script-sha256"
    before = daemon_set(rendered, "dev")["spec"]["template"]["metadata"]["annotations"][key]
    assert before == hashlib.sha256(config_map(rendered, "dev")["data"]["aiinfra-nodecheck"].encode()).hexdigest()
    bp = blueprint("dev")
    bp["node_groups"][2]["hosts"] = "gpu[02-03]"  # a node joins: its pod is new, the others keep running
    more = docs(render(build_data(bp, "dev.yaml", "dev"), only=["k8s-node-health"])["k8s/node-health/daemonset.yaml"])[0]
    assert more["spec"]["template"]["metadata"]["annotations"][key] == before


def test_the_loop_reads_the_config_again_so_a_joining_node_needs_no_restart(api, host):
    """The ConfigMap volume is updated in place by the kubelet: a pod started before its node was in
    the config (waiting, not exiting) starts checking it once the new config arrives."""
    server = api(a_node())
    config_file = host.dir / "nodecheck.json"
    full = config_file.read_text()
    config = json.loads(full)
    config["groups"] = [g for g in config["groups"] if g["group"] != "gpu-serve"]
    config_file.write_text(json.dumps(config))
    host.gpus(host.expect["gpus"] - 1)  # a lost GPU: what the check must report once it checks
    proc = subprocess.Popen(host.command(server, "--interval", "0.2"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        with server.lock:
            assert server.patches == []  # not its node yet: it waits, and says so once
        config_file.write_text(full)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with server.lock:
                if server.node["spec"]["taints"] != [GPU_TAINT]:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        with server.lock:
            assert any(t["key"] == "aiinfra.io/node-state" for t in server.node["spec"]["taints"])
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert out.count("not a node of") == 1


def test_an_operator_installed_driver_is_counted_in_its_driver_root():
    bp = blueprint("dev")
    bp["kubernetes"]["gpu_driver"] = "operator"
    files = render(build_data(bp, "dev.yaml", "dev"), only=["k8s-node-health"])
    probes = json.loads(docs(files["k8s/node-health/configmap.yaml"])[0]["data"]["nodecheck-probes.json"])
    pod = docs(files["k8s/node-health/daemonset.yaml"])[0]["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "host-nvidia"]
    assert probes["gpu_devices_dir"] == mount["mountPath"] + "/driver/dev"
    assert mount["mountPropagation"] == "HostToContainer"  # the driver container mounts it later
    assert {"path": "/run/nvidia", "type": "DirectoryOrCreate"} in [v.get("hostPath") for v in pod["volumes"]]


def test_the_service_account_may_patch_nodes_and_their_status_only(rendered):
    sa, role, binding = rendered["prod"]["rbac.yaml"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]},
                             {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]
    pod = daemon_set(rendered, "prod")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert daemon_set(rendered, "prod")["metadata"]["namespace"] == sa["metadata"]["namespace"]


def test_argo_cd_and_pulumi_apply_the_folder():
    built = load_stack("prod")
    k8s = built.cluster.blueprint.kubernetes
    files = render(built)
    (app,) = docs(files["gitops/node-health.yaml"])
    assert app["spec"]["destination"]["namespace"] == "kube-system"
    assert app["spec"]["sources"] == [{"repoURL": k8s.gitops_repo, "targetRevision": k8s.gitops_revision,
                                       "path": "manifests/prod/k8s/node-health"}]
    (project,) = docs(files["gitops/project.yaml"])
    assert {"server": "https://kubernetes.default.svc", "namespace": "kube-system"} in project["spec"]["destinations"]
    assert "node-health" in yaml.safe_load(files["k8s/kustomization.yaml"])["resources"]

    from aiinfra.deploy.components import rendered_components

    assert set(rendered_components(built.cluster, built.plan)["node-health"]) == {
        "configmap.yaml", "daemonset.yaml", "rbac.yaml", "kustomization.yaml"}


def test_no_node_health_without_kubernetes_gpu_nodes():
    bp = blueprint("dev")
    bp["node_groups"] = [g for g in bp["node_groups"] if g["name"] != "gpu-serve"]
    bp["serving"] = []
    bp["training"] = [j for j in bp["training"] if j["node_group"] != "gpu-serve"]
    del bp["versions"]["images"][NODECHECK_IMAGE_KEY]  # not needed then
    files = render(build_data(bp, "dev.yaml", "dev"))
    assert not [p for p in files if "node-health" in p]


# ------------------------------------------------------------------ the image is pinned

@pytest.mark.parametrize("image", [None, "python", "python:latest", "registry.example.org:5000/python"])
def test_a_kubernetes_gpu_cluster_needs_a_pinned_nodecheck_image(image):
    bp = blueprint("dev")
    if image is None:
        del bp["versions"]["images"][NODECHECK_IMAGE_KEY]
    else:
        bp["versions"]["images"][NODECHECK_IMAGE_KEY] = image
    with pytest.raises(BlueprintError) as exc:
        build_data(bp, "dev.yaml", "dev")
    (problem,) = [p for p in exc.value.problems if p.id == "k8s-nodecheck-image"]
    assert problem.path == ("versions", "images", NODECHECK_IMAGE_KEY)
    assert "python:3.12.8-slim-bookworm" in problem.hint


@pytest.mark.parametrize("image", ["python:3.12.8-slim-bookworm", "registry.example.org:5000/python:3.12",
                                   "python@sha256:" + "a" * 64])
def test_a_tag_or_digest_pins_the_image(image):
    bp = blueprint("dev")
    bp["versions"]["images"][NODECHECK_IMAGE_KEY] = image
    files = render(build_data(bp, "dev.yaml", "dev"), only=["k8s-node-health"])
    assert docs(files["k8s/node-health/daemonset.yaml"])[0]["spec"]["template"]["spec"]["containers"][0]["image"] == image


def test_validate_names_the_file_and_key_of_a_missing_image(aiinfra, tmp_path):
    text = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()
    lines = [line for line in text.splitlines(keepends=True) if not line.strip().startswith("nodecheck:")]
    f = tmp_path / "Pulumi.dev.yaml"
    f.write_text("".join(lines))
    r = aiinfra("validate", "--file", str(f))
    assert r.code == 1
    assert "Traceback" not in r.stdout + r.stderr
    assert "versions.images.nodecheck: error[k8s-nodecheck-image]" in r.stderr, r.stderr
    assert str(f) in r.stderr and "(fix: " in r.stderr


# ------------------------------------------------------------------ the workloads react

@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_serving_workload_has_a_disruption_budget_over_its_pods(env):
    """A drained node's serving pods leave through evictions (kubectl drain), which the budget paces."""
    from aiinfra.render.serving import objects

    built = load_stack(env)
    for name, objs in objects(built.cluster, built.plan).items():
        (pdb,) = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
        assert pdb["spec"]["maxUnavailable"] == 1
        selector = pdb["spec"]["selector"]["matchLabels"]
        templates = []
        for o in objs:
            if o["kind"] == "Deployment":
                templates.append(o["spec"]["template"])
            elif o["kind"] == "LeaderWorkerSet":
                lws = o["spec"]["leaderWorkerTemplate"]
                templates += [t for t in (lws.get("leaderTemplate"), lws.get("workerTemplate")) if t]
        assert templates, name
        for t in templates:
            labels = t["metadata"]["labels"]
            assert all(labels.get(k) == v for k, v in selector.items()), (name, selector, labels)
