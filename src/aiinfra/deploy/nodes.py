"""Take nodes out of service and back, now: ``aiinfra node drain|down|resume|replace|status``.

The blueprint's ``nodes:`` section is the persistent record (rendered into slurm.conf's DownNodes
and the Kubernetes node registration); these actions change the running cluster at once and say
which blueprint change records them (:func:`blueprint_change`).

- Slurm (hosts of ``scheduler: slurm`` groups): ``scontrol update`` on the environment's first
  ``slurm_controller`` host, run there ad hoc through ansible-runner
  (:func:`aiinfra.deploy.ansible.run_command`), or on this machine with ``local=True``
  (:class:`Controller`: one path for every controller command). DRAIN lets running jobs finish;
  DOWN stops them (Slurm requeues the requeue-able ones elsewhere); RESUME returns a node to
  service. Status comes from ``scontrol show node -o``.
- Kubernetes (hosts of ``scheduler: kubernetes`` groups): through the ``kubernetes`` client's
  CoreV1Api (:class:`KubeNodes`): cordon, the ``aiinfra.io/node-state`` taint (drain:
  NoSchedule, down: NoExecute) with the reason in an annotation, then every pod but DaemonSet
  and mirror pods evicted through the Eviction API (policy/v1), which honours
  PodDisruptionBudgets: a refused eviction (HTTP 429) is retried until a deadline, then reported.
- ``replace``: the host roles (``hosts up --limit``), then the acceptance gate (the slurm role's
  health check, DCGM diagnostics, a per-node nccl-tests job judged by the fabric gate), and
  RESUME only when the gate passes (:func:`replace_gate`).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from ClusterShell.NodeSet import NodeSet, NodeSetParseError
from pydantic import ValidationError

from aiinfra import paths
from aiinfra.catalog.k8s_resources import NODE_STATE_EFFECT, NODE_STATE_KEY, NODE_STATE_REASON_ANNOTATION
from aiinfra.catalog.names import suggest
from aiinfra.deploy.acceptance import gate, parse_output
from aiinfra.deploy.ansible import DeployError, ModuleResult, RunResult, run_command, run_module, run_site
from aiinfra.errors import UsageError
from aiinfra.render.slurm import HOST_SETTINGS
from aiinfra.render.templates import fold
from aiinfra.spec.cluster import Cluster, node_states
from aiinfra.spec.models import NodeState

#: What ``aiinfra node`` does to a node, and the blueprint state each one records.
STATE_OF_ACTION = {"drain": "drain", "down": "down", "resume": None, "replace": None}
SLURM_STATE = {"drain": "DRAIN", "down": "DOWN", "resume": "RESUME"}
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"  # static pods the kubelet mirrors into the API
ACCEPTANCE_DIR = "/var/tmp/aiinfra-acceptance"  # on the controller (the job script) and the node (results)
# The dcgm role's GPU health probe (dcgm_health_probe, roles/dcgm/defaults/main.yml; a test keeps them equal).
GPU_HEALTH_PROBE = "/usr/local/sbin/aiinfra-gpu-health"


# ---------------------------------------------------------------- hosts, reasons


def resolve_hosts(cluster: Cluster, expressions: Iterable[str]) -> list[str]:
    """The hosts of one or more hostlist expressions, in hostlist order; unknown ones are refused
    (with the closest name), and so are decommissioned ones."""
    nodes = NodeSet()
    for expr in expressions:
        try:
            nodes.update(NodeSet(expr))
        except NodeSetParseError as exc:
            raise UsageError(f"'{expr}' is not a hostlist ({exc}); e.g. gpu[001-004],gpu010") from None
    if not len(nodes):
        raise UsageError("give at least one host, e.g. gpu001 or gpu[001-004]")
    hosts = list(nodes)
    retired = {h for h, s in node_states(cluster.blueprint).items() if s.state == "decommissioned"}
    unknown = [h for h in hosts if h not in cluster.hosts]
    if unknown:
        h = unknown[0]
        if h in retired:
            raise UsageError(f"{h} is decommissioned in {cluster.source} (nodes:): it is in no rendered file; "
                             f"remove it from nodes: and give it back to its group first")
        more = f" and {len(unknown) - 1} more ({NodeSet.fromlist(unknown[1:])})" if len(unknown) > 1 else ""
        raise UsageError(f"no host '{h}' in {cluster.env}{suggest(h, list(cluster.hosts))}{more}")
    return hosts


def by_scheduler(cluster: Cluster, hosts: Iterable[str]) -> dict[str, list[str]]:
    """Hosts split by the scheduler of their group: ``slurm``, ``kubernetes``, ``none``."""
    out: dict[str, list[str]] = {"slurm": [], "kubernetes": [], "none": []}
    for h in hosts:
        out[cluster.groups[cluster.hosts[h].group].scheduler].append(h)
    return out


def checked_reason(state: str, reason: str | None) -> str:
    """The reason, checked by the blueprint's own rule (NodeState.reason), so the printed blueprint
    change is valid as it stands and Slurm and Kubernetes carry the same text."""
    if not reason:
        raise UsageError(f"{state} needs --reason TEXT: why, as `sinfo -R` and the node's annotation show it "
                         f"(e.g. --reason 'XID 79 GPU3, RMA 4711')")
    try:
        return NodeState(state=state, reason=reason).reason
    except ValidationError:
        raise UsageError(f"--reason {reason!r}: give 3 to 120 characters without double quotes, '#', backslash, "
                         f"tab or newline (the blueprint's rule for nodes: reasons)") from None


# ---------------------------------------------------------------- the blueprint change


@dataclass(frozen=True)
class BlueprintEdit:
    op: str  # "add" or "remove"
    key: str  # a hostlist, a key of nodes:
    state: NodeState | None = None

    def line(self) -> str:
        if self.op == "remove":
            return f"remove nodes: {self.key}"
        assert self.state is not None
        entry = yaml.safe_dump({self.key: {"state": self.state.state, "reason": self.state.reason}},
                               default_flow_style=None, sort_keys=False, width=1000).strip()
        return f"add under nodes: {entry}"


def blueprint_change(cluster: Cluster, changes: dict[str, NodeState | None]) -> list[BlueprintEdit]:
    """What to edit under ``nodes:`` so the blueprint records ``changes`` (host -> its new state,
    None: back in service). A key whose hosts all keep their state stays; one that loses a host is
    removed and its other hosts are added back, grouped with the new states by (state, reason)."""
    current = dict(cluster.blueprint.nodes)
    wanted = {h: s for hostlist, s in current.items() for h in NodeSet(hostlist)}
    for host, state in changes.items():
        if state is None:
            wanted.pop(host, None)
        else:
            wanted[host] = state
    edits: list[BlueprintEdit] = []
    covered: set[str] = set()
    for key, state in current.items():
        members = list(NodeSet(key))
        if all(wanted.get(h) == state for h in members):
            covered.update(members)
        else:
            edits.append(BlueprintEdit("remove", key))
    groups: dict[tuple[str, str], list[str]] = {}
    for host, state in wanted.items():
        if host not in covered:
            groups.setdefault((state.state, state.reason), []).append(host)
    for (state, reason), hosts in sorted(groups.items(), key=lambda kv: fold(kv[1])):
        edits.append(BlueprintEdit("add", fold(hosts), NodeState(state=state, reason=reason)))
    return edits


# ---------------------------------------------------------------- running commands


@dataclass
class Remote:
    """Ad-hoc Ansible over the rendered inventory (the connection settings of ``hosts up``)."""

    cluster: Cluster
    root: Path
    extra_vars: list[str] = field(default_factory=list)
    inventories: list[Path] = field(default_factory=list)

    def on(self, host: str, argv: list[str], timeout_s: int | None = None) -> ModuleResult:
        return run_command(self.cluster, self.root, host, argv, extra_vars=self.extra_vars,
                           inventories=self.inventories, timeout_s=timeout_s)

    def copy(self, host: str, src: Path, dest: str, mode: str = "0755") -> ModuleResult:
        done = run_module(self.cluster, self.root, host, "ansible.builtin.copy",
                          {"src": str(src), "dest": dest, "mode": mode},
                          extra_vars=self.extra_vars, inventories=self.inventories)
        return done.get(host) or ModuleResult(host, 1, msg="ansible ran nothing")


@dataclass
class Controller:
    """Where Slurm commands run: the first ``slurm_controller`` host through :class:`Remote`, or this
    machine (``local``: scontrol on PATH with a working slurm.conf). The one path for every
    scontrol/sbatch call of this module."""

    remote: Remote
    local: bool = False

    @property
    def host(self) -> str:
        if self.local:
            return "localhost"
        ctl = self.remote.cluster.hosts_with_role("slurm_controller")
        if not ctl:
            raise DeployError(f"{self.remote.cluster.env} has no slurm_controller host to run scontrol on "
                              f"(give --local to run it here)")
        return ctl[0]

    def run(self, argv: list[str], timeout_s: int = 60) -> ModuleResult:
        if not self.local:
            return self.remote.on(self.host, argv, timeout_s)
        if shutil.which(argv[0]) is None:
            return ModuleResult("localhost", 127, msg=f"{argv[0]} not found on PATH (--local)")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return ModuleResult("localhost", 124, msg=f"{argv[0]}: no answer within {timeout_s} s")
        return ModuleResult("localhost", done.returncode, done.stdout, done.stderr)

    def check(self, argv: list[str], timeout_s: int = 60) -> ModuleResult:
        done = self.run(argv, timeout_s)
        if not done.ok:
            where = "here" if self.local else f"on {self.host}"
            raise DeployError(f"`{shlex.join(argv)}` failed {where}: {done.why}")
        return done


# ---------------------------------------------------------------- Slurm


@dataclass(frozen=True)
class SlurmNode:
    """One node as ``scontrol show node -o`` shows it."""

    name: str
    state: str  # e.g. IDLE, IDLE+DRAIN, MIXED+DRAIN, DOWN+NOT_RESPONDING
    reason: str = ""
    reason_user: str = ""
    reason_time: str = ""

    @property
    def flags(self) -> list[str]:
        return self.state.rstrip("*").split("+")

    @property
    def out_of_service(self) -> str | None:
        """The blueprint state it matches: down, drain, or None when it takes work."""
        if self.flags[0] == "DOWN":
            return "down"
        if "DRAIN" in self.flags:
            return "drain"
        return None

    @property
    def shown(self) -> str:
        """sinfo's words: drained (idle, drain), draining (jobs still running), down, idle, ..."""
        base = self.flags[0].lower()
        if "DRAIN" in self.flags and base != "down":
            return "drained" if base == "idle" else "draining"
        return base


def scontrol_update(hosts: Iterable[str], action: str, reason: str | None = None) -> list[str]:
    """``scontrol update NodeName=<hostlist> State=DRAIN|DOWN|RESUME [Reason=...]`` as argv (no shell:
    the reason is one argument, as ``Reason="..."`` is in a shell)."""
    argv = ["scontrol", "update", f"NodeName={fold(hosts)}", f"State={SLURM_STATE[action]}"]
    if action != "resume":
        argv.append(f"Reason={reason}")
    return argv


def parse_show_node(text: str) -> dict[str, SlurmNode]:
    """``scontrol show node -o`` (one line per node) -> node name -> :class:`SlurmNode`.

    The reason is free text followed by `` [user@time]`` (Slurm 22.05 and 24.11 alike), so it is
    cut there rather than at the next ``Key=``."""
    out = {}
    for line in text.splitlines():
        name = re.match(r"NodeName=(\S+)", line.strip())
        if not name:
            continue
        state = re.search(r"(?:^| )State=(\S+)", line)
        reason = re.search(r"(?:^| )Reason=(.*?) \[([^\s@\]]+)@([^\s\]]+)\]", line)
        bare = None if reason else re.search(r"(?:^| )Reason=(\S+)", line)
        out[name.group(1)] = SlurmNode(
            name.group(1), state.group(1) if state else "UNKNOWN",
            reason.group(1) if reason else (bare.group(1) if bare and bare.group(1) != "(null)" else ""),
            reason.group(2) if reason else "", reason.group(3) if reason else "")
    return out


def slurm_status(controller: Controller, hosts: list[str]) -> dict[str, SlurmNode]:
    done = controller.check(["scontrol", "show", "node", "-o", fold(hosts)])
    return parse_show_node(done.stdout)


def slurm_set(controller: Controller, hosts: list[str], action: str, reason: str | None) -> dict[str, SlurmNode]:
    """Drain, down or resume ``hosts`` in Slurm; returns their state after the change."""
    controller.check(scontrol_update(hosts, action, reason))
    return slurm_status(controller, hosts)


# ---------------------------------------------------------------- Kubernetes


@dataclass
class KubeOutcome:
    """What one Kubernetes node went through."""

    host: str
    state: str | None = None  # node-state taint value after the action (None: no taint)
    unschedulable: bool = False
    reason: str = ""
    ready: str = "?"
    evicted: list[str] = field(default_factory=list)  # namespace/name
    gone: list[str] = field(default_factory=list)  # gone before their eviction (404)
    skipped: dict[str, str] = field(default_factory=dict)  # pod -> why (DaemonSet, mirror pod)
    refused: dict[str, str] = field(default_factory=dict)  # pod -> the API's message (PDB: HTTP 429)
    failed: dict[str, str] = field(default_factory=dict)  # pod -> other API errors

    @property
    def ok(self) -> bool:
        return not self.refused and not self.failed


def connect_kubernetes(kubeconfig: Path | None = None) -> KubeNodes:
    """A :class:`KubeNodes` over the real client: the kubeconfig given, else $KUBECONFIG, else
    ~/.kube/config (kubernetes.config.load_kube_config), else the in-cluster service account."""
    try:
        import urllib3
        from kubernetes import client, config
    except ImportError:
        raise DeployError("the Kubernetes Python client is not installed: `pip install kubernetes` into "
                          "aiinfra's environment to act on kubernetes hosts") from None
    try:
        config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None)
    except (config.ConfigException, OSError) as exc:
        if kubeconfig is not None:
            raise DeployError(f"kubeconfig {kubeconfig}: {exc}") from None
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise DeployError(f"no kubeconfig ({exc}): give --kubeconfig or set KUBECONFIG") from None
    return KubeNodes(client.CoreV1Api(), client.exceptions.ApiException, urllib3.exceptions.HTTPError)


class KubeNodes:
    """Node state through a CoreV1Api-like object: ``read_node``, ``patch_node`` (a dict body: the
    client sends it as a strategic merge patch), ``list_pod_for_all_namespaces`` and
    ``create_namespaced_pod_eviction`` (policy/v1 Eviction). ``api_error`` is the client's
    exception type (``ApiException``: ``.status``, ``.body``); ``transport_error`` the one of an
    unreachable API server. Tests hand in a fake of the same methods."""

    def __init__(self, core: Any, api_error: type[Exception], transport_error: type[Exception] = OSError, *,
                 evict_timeout_s: float = 300, retry_interval_s: float = 5,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.core = core
        self.api_error = api_error
        self.transport_error = transport_error
        self.evict_timeout_s = evict_timeout_s
        self.retry_interval_s = retry_interval_s
        self.sleep = sleep
        self.clock = clock

    # -------------------------------------------------- helpers

    def _message(self, exc: Exception) -> str:
        body = getattr(exc, "body", None)
        try:
            message = json.loads(body).get("message") if body else None
        except (ValueError, AttributeError):
            message = None
        return message or f"HTTP {getattr(exc, 'status', '?')} {getattr(exc, 'reason', '') or exc}".strip()

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self.transport_error as exc:
            raise DeployError(f"Kubernetes API unreachable ({what}): {exc}") from None

    @staticmethod
    def _taint_dict(taint: Any) -> dict:
        out = {"key": taint.key, "effect": taint.effect}
        if getattr(taint, "value", None) is not None:
            out["value"] = taint.value
        added = getattr(taint, "time_added", None)
        if added is not None:
            out["timeAdded"] = added.isoformat().replace("+00:00", "Z") if isinstance(added, datetime) else added
        return out

    def _patch(self, host: str, build: Callable[[Any], dict]) -> Any:
        """Read the node, patch it with ``build(node)`` guarded by its resourceVersion; re-read and
        retry on a conflict (HTTP 409: someone changed the node between the read and the patch)."""
        for _ in range(5):
            node = self._call(f"read node {host}", lambda: self.core.read_node(host))
            body = build(node)
            body.setdefault("metadata", {})["resourceVersion"] = node.metadata.resource_version
            try:
                return self._call(f"patch node {host}", lambda b=body: self.core.patch_node(host, b))
            except self.api_error as exc:
                if getattr(exc, "status", None) != 409:
                    raise DeployError(f"node {host}: {self._message(exc)}") from None
        raise DeployError(f"node {host}: changed by others on every try (HTTP 409), nothing patched")

    def _outcome(self, node: Any) -> KubeOutcome:
        taint = next((t for t in node.spec.taints or [] if t.key == NODE_STATE_KEY), None)
        ready = next((c.status for c in (getattr(node.status, "conditions", None) or []) if c.type == "Ready"), "?")
        return KubeOutcome(node.metadata.name, taint.value if taint else None, bool(node.spec.unschedulable),
                           (node.metadata.annotations or {}).get(NODE_STATE_REASON_ANNOTATION, ""), ready)

    # -------------------------------------------------- actions

    def read(self, host: str) -> Any:
        try:
            return self._call(f"read node {host}", lambda: self.core.read_node(host))
        except self.api_error as exc:
            raise DeployError(f"node {host}: {self._message(exc)}") from None

    def status(self, host: str) -> KubeOutcome:
        return self._outcome(self.read(host))

    def set_state(self, host: str, state: str, reason: str) -> KubeOutcome:
        """Cordon, taint (drain: NoSchedule, down: NoExecute) and annotate ``host``, then evict its pods."""

        def build(node: Any) -> dict:
            taints = [self._taint_dict(t) for t in node.spec.taints or [] if t.key != NODE_STATE_KEY]
            taints.append({"key": NODE_STATE_KEY, "value": state, "effect": NODE_STATE_EFFECT[state]})
            return {"metadata": {"annotations": {NODE_STATE_REASON_ANNOTATION: reason}},
                    "spec": {"unschedulable": True, "taints": taints}}

        outcome = self._outcome(self._patch(host, build))
        self.evict(host, outcome)
        return outcome

    def resume(self, host: str) -> KubeOutcome:
        """Uncordon ``host`` and take the node-state taint and reason annotation away."""

        def build(node: Any) -> dict:
            taints = [self._taint_dict(t) for t in node.spec.taints or [] if t.key != NODE_STATE_KEY]
            return {"metadata": {"annotations": {NODE_STATE_REASON_ANNOTATION: None}},
                    "spec": {"unschedulable": False, "taints": taints}}

        return self._outcome(self._patch(host, build))

    def evict(self, host: str, outcome: KubeOutcome) -> None:
        """Evict every pod of ``host`` but DaemonSet and mirror pods; retry those a
        PodDisruptionBudget refuses (HTTP 429) every ``retry_interval_s`` up to ``evict_timeout_s``."""
        listed = self._call(f"list pods of {host}", lambda: self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={host}"))
        pending = []
        for pod in listed.items:
            key = f"{pod.metadata.namespace}/{pod.metadata.name}"
            owners = [o.kind for o in pod.metadata.owner_references or []]
            if "DaemonSet" in owners:
                outcome.skipped[key] = "DaemonSet pod"
            elif MIRROR_POD_ANNOTATION in (pod.metadata.annotations or {}):
                outcome.skipped[key] = "mirror (static) pod"
            else:
                pending.append(pod)
        deadline = self.clock() + self.evict_timeout_s
        while pending:
            refused = []
            for pod in pending:
                key = f"{pod.metadata.namespace}/{pod.metadata.name}"
                body = {"apiVersion": "policy/v1", "kind": "Eviction",
                        "metadata": {"name": pod.metadata.name, "namespace": pod.metadata.namespace}}
                try:
                    self._call(f"evict {key}", lambda p=pod, b=body: self.core.create_namespaced_pod_eviction(
                        p.metadata.name, p.metadata.namespace, b))
                    outcome.evicted.append(key)
                    outcome.refused.pop(key, None)
                except self.api_error as exc:
                    status = getattr(exc, "status", None)
                    if status == 404:
                        outcome.gone.append(key)
                        outcome.refused.pop(key, None)
                    elif status == 429:
                        outcome.refused[key] = self._message(exc)
                        refused.append(pod)
                    else:
                        outcome.failed[key] = self._message(exc)
            pending = refused
            left = deadline - self.clock()
            if not pending or left <= 0:
                break
            self.sleep(min(self.retry_interval_s, left))


# ---------------------------------------------------------------- replace: the acceptance gate


@dataclass
class GateStep:
    name: str
    passed: bool | None  # None: skipped
    detail: str = ""


def health_check(remote: Remote, host: str) -> GateStep:
    """The slurm role's health check on the node, changing nothing (``--dry-run``): GPU count
    against the GRES, HCA ports Active at their rate, the Lustre mount. Exit 0: healthy."""
    done = remote.on(host, [HOST_SETTINGS.health_check_program, "--dry-run", "--node", host], timeout_s=120)
    detail = (done.stdout.strip().splitlines() or [done.why])[-1] if done.ok else done.why
    return GateStep("health check", done.ok, detail)


def dcgm_diag(remote: Remote, host: str, level: int = 2) -> GateStep:
    """DCGM's diagnostic (level 2: medium, minutes) through the dcgm role's probe, which runs
    ``dcgmi diag -r N -j`` and records the verdict the Slurm and Kubernetes health checks read: a
    failure recorded before the swap keeps the node out until a diagnostic passes, so the gate must
    go through the probe, not dcgmi alone. It prints one JSON object (ok, failed_gpus, message)."""
    done = remote.on(host, [GPU_HEALTH_PROBE, "diag", "-r", str(level)], timeout_s=3600)
    try:
        result = json.loads((done.stdout.strip().splitlines() or ["{}"])[-1])
    except ValueError:
        result = {}
    passed = done.ok and isinstance(result, dict) and result.get("ok") is True
    detail = "pass"
    if not passed:
        gpus = result.get("failed_gpus") if isinstance(result, dict) else None
        message = (result.get("message") if isinstance(result, dict) else None) or done.why
        detail = (f"GPU {', '.join(map(str, gpus))} failed: " if gpus else "") + " ".join(str(message).split())[:200]
    return GateStep(f"dcgmi diag -r {level}", passed, detail)


def partition_of(cluster: Cluster, host: str) -> str | None:
    group = cluster.hosts[host].group
    slurm = cluster.blueprint.slurm
    return next((p.name for p in slurm.partitions if group in p.node_groups), None) if slurm else None


def nccl_acceptance(cluster: Cluster, root: Path, controller: Controller, host: str, reservation: str,
                    timeout_s: int = 3 * 3600) -> GateStep:
    """The per-node nccl-tests job of the node's partition (manifests/<env>/acceptance/<partition>/,
    copied to the controller), run inside the replace reservation and judged by the fabric gate of
    ``aiinfra fabric check`` (:func:`aiinfra.deploy.acceptance.gate`) on its outputs, read back
    from the node (the batch host of a one-node job)."""
    name = "nccl-tests (node)"
    part = partition_of(cluster, host)
    script = paths.manifests_dir(cluster.env, root) / "acceptance" / str(part) / "nccl-tests.sbatch"
    if part is None or not script.is_file():
        return GateStep(name, False, f"no rendered acceptance job for {host} ({script})")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = f"{ACCEPTANCE_DIR}/{host}-{stamp}"
    if controller.local:
        job = str(script)
    else:
        job = f"{folder}/nccl-tests.sbatch"
        controller.check(["mkdir", "-p", folder])
        copied = controller.remote.copy(controller.host, script, job)
        if not copied.ok:
            return GateStep(name, False, f"copying the job to {controller.host}: {copied.why}")
    results = f"{folder}/results"
    job_run = controller.run(["sbatch", "--wait", "--parsable", f"--nodelist={host}", f"--reservation={reservation}",
                              f"--output={ACCEPTANCE_DIR}/nccl-acceptance-%j.out", job, "node", results], timeout_s)
    if not job_run.ok:
        return GateStep(name, False, f"sbatch: {job_run.why}")
    read = controller.remote.on(host, ["sh", "-c", 'cat "$1"/*.out', "sh", results], timeout_s=120)
    runs = parse_output(read.stdout, f"{host}:{results}")
    verdicts, _ = gate(cluster, runs)
    mine = [v for v in verdicts if v.node == host]
    if not mine:
        return GateStep(name, False, f"no nccl-tests result for {host} in {results} ({read.why})")
    return GateStep(name, mine[0].passed, "pass" if mine[0].passed else "; ".join(mine[0].problems))


def replace_gate(cluster: Cluster, root: Path, controller: Controller, host: str, reservation: str,
                 skip_gpu_tests: str | None, on_step: Callable[[str, GateStep], None] | None = None) -> list[GateStep]:
    """The acceptance gate of a node whose hardware was swapped, after its host roles ran: the
    health check, then (GPU nodes, unless ``skip_gpu_tests`` says why not) DCGM diagnostics and the
    per-node nccl-tests job. Stops at the first failure."""
    steps = []

    def record(step: GateStep) -> bool:
        steps.append(step)
        if on_step:
            on_step(host, step)
        return step.passed is not False

    if not record(health_check(controller.remote, host)):
        return steps
    if not cluster.groups[cluster.hosts[host].group].gpus_per_node:
        return steps
    if skip_gpu_tests:
        record(GateStep("dcgmi diag -r 2", None, skip_gpu_tests))
        record(GateStep("nccl-tests (node)", None, skip_gpu_tests))
        return steps
    if record(dcgm_diag(controller.remote, host)):
        record(nccl_acceptance(cluster, root, controller, host, reservation))
    return steps


@dataclass
class Replaced:
    """One node through ``replace``: its state before, host roles, gate, and whether it went back."""

    host: str
    before: SlurmNode
    roles: str = "not run"  # ok, changed, failed, unreachable, not run
    steps: list[GateStep] = field(default_factory=list)
    resumed: bool = False
    after: SlurmNode | None = None

    @property
    def passed(self) -> bool:
        return self.roles in ("ok", "changed") and bool(self.steps) and all(s.passed is not False for s in self.steps)

    @property
    def why(self) -> str:
        if self.roles not in ("ok", "changed"):
            return f"host roles {self.roles}"
        failed = next((s for s in self.steps if s.passed is False), None)
        return f"{failed.name}: {failed.detail}" if failed else "gate not run"


def replace_nodes(cluster: Cluster, root: Path, controller: Controller, hosts: list[str], *, tags: str | None = None,
                  skip_gpu_tests: str | None = None, on_event: Callable | None = None,
                  on_step: Callable[[str, GateStep], None] | None = None,
                  reservation_minutes: int = 6 * 60) -> tuple[RunResult | None, list[Replaced]]:
    """Bring swapped nodes back: only nodes Slurm has out of service (down or drained) are taken.

    1. a maintenance reservation of these nodes alone (root only: no other job lands there), and
       RESUME inside it, so slurmd registers and the slurm role's verify step sees the node up;
    2. the host roles (``hosts up --limit``: :func:`aiinfra.deploy.ansible.run_site`);
    3. the gate on each node (:func:`replace_gate`);
    4. the reservation deleted: a node that passed is in service; one that failed (or was not
       judged, the run interrupted) is set back to its state and reason from before."""
    before = slurm_status(controller, hosts)
    missing = [h for h in hosts if h not in before]
    if missing:
        raise DeployError(f"{fold(missing)}: not in Slurm's node table (scontrol show node)")
    serving = [h for h in hosts if before[h].out_of_service is None]
    if serving:
        raise UsageError(f"{fold(serving)}: in service in Slurm ({before[serving[0]].shown}); replace takes nodes "
                         f"that are out: `aiinfra node down {fold(serving)} --reason ...` first")
    done = {h: Replaced(h, before[h]) for h in hosts}
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    reservation = f"aiinfra-replace-{stamp}"
    site = None
    controller.check(["scontrol", "create", "reservation", f"ReservationName={reservation}", f"Nodes={fold(hosts)}",
                      "StartTime=now", f"Duration={reservation_minutes}", "Users=root", "Flags=MAINT,IGNORE_JOBS"])
    try:
        controller.check(scontrol_update(hosts, "resume"))
        site = run_site(cluster, root, limit=fold(hosts), tags=tags, extra_vars=controller.remote.extra_vars,
                        inventories=controller.remote.inventories, on_event=on_event)
        for host in hosts:
            stats = site.hosts.get(host)
            done[host].roles = stats.status if stats else "not run"
            if done[host].roles in ("ok", "changed"):
                done[host].steps = replace_gate(cluster, root, controller, host, reservation, skip_gpu_tests, on_step)
    finally:
        for d in done.values():  # back as they were, unless they passed
            d.resumed = d.passed
            if not d.resumed:
                controller.run(scontrol_update([d.host], d.before.out_of_service or "down",
                                               d.before.reason or f"aiinfra node replace: {d.why}"[:120]))
        controller.run(["scontrol", "delete", f"ReservationName={reservation}"])
    after = slurm_status(controller, hosts)
    for d in done.values():
        d.after = after.get(d.host)
    return site, list(done.values())
