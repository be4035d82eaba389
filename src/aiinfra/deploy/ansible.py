"""Run ``playbooks/site.yml`` over the rendered inventory with ansible-runner.

The executor applies what ``aiinfra render`` produced and decides nothing: it refuses stale
manifests (or renders them first when asked), runs the playbook in a fresh private data dir
under ``.aiinfra/runs/<timestamp>/`` (the last :data:`KEEP_RUNS` kept), reports progress from runner
events and returns per-host results. The CLI (:mod:`aiinfra.cli.hosts`) shows them.

A run folder keeps no secret: ansible-runner 2.4 would write the env/ files (envvars, extravars,
cmdline, ...) from its arguments, which ``suppress_env_files`` stops, and always writes
``artifacts/<ident>/command`` with the whole environment of ansible-playbook (the operator's, e.g.
PULUMI_CONFIG_PASSPHRASE) and its command line (``-e key=value`` secrets): that file is rewritten
without the environment and with the ``-e`` values hidden as soon as the playbook has started
(:func:`scrub_command_file`). ``-e @file`` passes a path, never the file's contents.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiinfra import paths
from aiinfra.catalog.names import suggest
from aiinfra.errors import AiinfraError, UsageError
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.render import render_all
from aiinfra.render.inventory import INVENTORY_FILE
from aiinfra.render.writer import TreeDiff, diff_tree, write_tree
from aiinfra.spec.cluster import Cluster

CHECKOUT = paths.code_root()  # playbooks/, roles/, ansible.cfg: a checkout's or the wheel's


# How many run folders (.aiinfra/runs/<timestamp>/) `aiinfra hosts up` keeps: the newest.
KEEP_RUNS = 10
_RUN_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z(-\d+)?$")
_HIDDEN = "<hidden by aiinfra>"


class StaleManifests(AiinfraError):
    """manifests/<env>/ differs from a fresh render of the blueprint."""


class DeployError(AiinfraError):
    """The playbook could not be started."""


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"


@dataclass
class Progress:
    """What the run has done so far, updated from runner events (the live display reads it)."""

    task: str = ""
    play: str = ""
    hosts: dict[str, HostStats] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)  # first line of each failure
    changes: list[str] = field(default_factory=list)  # "host: task" and its diff, for changed tasks

    def host(self, name: str) -> HostStats:
        return self.hosts.setdefault(name, HostStats())


@dataclass
class RunResult:
    rc: int
    status: str
    hosts: dict[str, HostStats]
    private_data_dir: Path
    elapsed_s: float
    messages: list[str]
    changes: list[str] = field(default_factory=list)

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, s in self.hosts.items() if s.failed or s.unreachable)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failed_hosts

    @property
    def changed(self) -> int:
        return sum(s.changed for s in self.hosts.values())


def code_root(project: Path) -> Path:
    """Where playbooks/, roles/ and ansible.cfg are: the project's own, else this checkout's."""
    if (project / "playbooks" / "site.yml").is_file() and (project / "roles").is_dir():
        return project
    return CHECKOUT


def freshness(cluster: Cluster, plan: ClusterPlan, root: Path) -> tuple[dict[str, str], TreeDiff]:
    artifacts = render_all(cluster, plan)
    return artifacts, diff_tree(paths.manifests_dir(cluster.env, root), artifacts)


def ensure_fresh(cluster: Cluster, plan: ClusterPlan, root: Path, render: bool) -> str:
    """Render first (``render``) or refuse when manifests/<env>/ is stale. Returns what happened."""
    artifacts, diff = freshness(cluster, plan, root)
    if diff.clean:
        return "manifests up to date"
    if render:
        write_tree(paths.manifests_dir(cluster.env, root), artifacts)
        return f"rendered manifests/{cluster.env} ({len(artifacts)} files)"
    stale = [*diff.changed, *diff.added, *diff.removed]
    raise StaleManifests(
        f"manifests/{cluster.env} is stale ({len(stale)} file(s), e.g. {stale[0]}): run "
        f"`aiinfra render --stack {cluster.env}` and review the diff, or pass --render"
    )


def new_private_data_dir(root: Path) -> Path:
    """A fresh folder per run: ansible-runner keeps command lines (e.g. --check) in its data dir."""
    base = root / ".aiinfra" / "runs"
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = base / stamp
    n = 0
    while path.exists():
        n += 1
        path = base / f"{stamp}-{n}"
    path.mkdir()
    return path


def prune_runs(root: Path, keep: int = KEEP_RUNS) -> list[Path]:
    """Delete all but the newest ``keep`` run folders of ``.aiinfra/runs/`` (names are UTC time
    stamps, so they sort in time order); other entries are left alone. Returns what was deleted."""
    base = root / ".aiinfra" / "runs"
    if keep < 1 or not base.is_dir():
        return []
    runs = sorted(p for p in base.iterdir() if p.is_dir() and _RUN_NAME.match(p.name))
    old = runs[:-keep]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def hide_extra_vars(command: list[str]) -> list[str]:
    """``command`` with the value of every ``-e``/``--extra-vars`` hidden, except ``@file`` (a path)."""
    out, hide_next = [], False
    for arg in command:
        if hide_next:
            out.append(arg if arg.startswith("@") else _HIDDEN)
            hide_next = False
        elif arg in ("-e", "--extra-vars"):
            out.append(arg)
            hide_next = True
        elif arg.startswith("--extra-vars="):
            value = arg.split("=", 1)[1]
            out.append(arg if value.startswith("@") else f"--extra-vars={_HIDDEN}")
        elif arg.startswith("-e") and not arg.startswith("--"):
            out.append(arg if arg[2:].startswith("@") else f"-e{_HIDDEN}")
        else:
            out.append(arg)
    return out


def scrub_command_file(private_data_dir: Path) -> None:
    """Rewrite each ``artifacts/*/command`` that ansible-runner wrote: the command line with the
    ``-e`` values hidden and the working directory; the environment dropped."""
    for path in sorted(private_data_dir.glob("artifacts/*/command")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        command = data.get("command") if isinstance(data, dict) else None
        kept = {"command": hide_extra_vars([str(a) for a in command]) if isinstance(command, list) else [],
                "cwd": data.get("cwd", "") if isinstance(data, dict) else ""}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(path)


def _abs_extra_vars(value: str) -> str:
    """``@file`` -> ``@/abs/file`` (the run's cwd is its private data dir); ``k=v`` stays."""
    if value.startswith("@"):
        return "@" + str(Path(value[1:]).expanduser().resolve())
    return value


# Ansible's own subscript of a group, group[0] or group[0:9] (ansible-core 2.19,
# lib/ansible/inventory/manager.py PATTERN_WITH_SUBSCRIPT); "gpu[001-032]" it reads as a removed
# [x-y] subscript of a group "gpu", so aiinfra's hostlists are expanded before Ansible sees them.
_SUBSCRIPT = re.compile(r"^(.+)\[(-?[0-9]+|[0-9]+:[0-9]*)\]$")
# Terms of a pattern: Ansible separates them with ',' or ':' (split_host_pattern); brackets hold ranges.
_TERM = re.compile(r"(?:[^,:\[\]]|\[[^\]]*\])+")


def _matches(pattern: str, names: Iterable[str]) -> bool:
    """Whether an Ansible glob (``gpu0*``) or regex (``~gpu0[12]``) matches one of ``names``."""
    import fnmatch

    if pattern.startswith("~"):
        try:
            regex = re.compile(pattern[1:])
        except re.error:
            return False
        return any(regex.search(n) for n in names)
    return any(c in pattern for c in "*?") and bool(fnmatch.filter(names, pattern))


def resolve_limit(limit: str, groups: dict[str, list[str]], hosts: Iterable[str], strict: bool = True) -> str:
    """An Ansible ``--limit`` with aiinfra's hostlists (``gpu[001-032]``) expanded to host names.

    Every term (``!`` and ``&`` terms too: a typo in an exclusion would run on the host meant to be
    left out) must name a host or group of the inventory, match one as a glob or ``~regex``, or be a
    group with Ansible's ``[0:9]`` subscript; else a UsageError with the closest name. ``strict``
    False (extra inventories beside the rendered one) passes unknown terms on to Ansible.
    ``@file`` limits are Ansible's own and pass unchanged."""
    from ClusterShell.NodeSet import NodeSet, NodeSetParseError

    if limit.startswith("@"):
        return limit
    hosts = set(hosts)
    names = hosts | set(groups) | {"all"}
    terms: list[str] = []
    for term in _TERM.findall(limit):
        sign, body = (term[0], term[1:]) if term[:1] in ("!", "&") else ("", term)
        sub = _SUBSCRIPT.match(body)
        if body in names or _matches(body, names) or (sub and (sub[1] in groups or _matches(sub[1], groups))):
            terms.append(term)
            continue
        try:
            expanded = list(NodeSet(body)) if "[" in body else []
        except NodeSetParseError:
            expanded = []
        unknown = [h for h in expanded if h not in hosts]
        if expanded and not unknown:
            terms += [sign + h for h in expanded]
        elif strict:
            shown = str(NodeSet.fromlist(unknown)) if unknown else body
            hint = suggest(unknown[0] if unknown else body, sorted(names))
            raise UsageError(f"--limit {limit}: {shown} is no host or group of the inventory{hint}; "
                             f"groups: {', '.join(sorted(groups))}")
        else:
            terms.append(term)
    return ",".join(terms)


def _quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _diff_list(diff: object) -> list[dict]:
    if isinstance(diff, dict):
        return [diff]
    return [d for d in diff or [] if isinstance(d, dict)]


def _unified(diff: dict) -> str:
    """One --diff entry (before/after texts) as a unified diff."""
    import difflib

    before, after = diff.get("before", ""), diff.get("after", "")
    if not isinstance(before, str) or not isinstance(after, str):
        return ""
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                        str(diff.get("before_header", "before")),
                                        str(diff.get("after_header", "after")))).rstrip("\n")


def handle_event(progress: Progress, event: dict) -> None:
    """Fold one ansible-runner event into ``progress``."""
    kind = event.get("event", "")
    data = event.get("event_data", {}) or {}
    host = data.get("host") or data.get("remote_addr")
    if kind == "playbook_on_play_start":
        progress.play = data.get("name", "")
    elif kind == "playbook_on_task_start":
        progress.task = data.get("task", "")
    elif kind == "runner_on_ok" and host:
        stats = progress.host(host)
        stats.ok += 1
        res = data.get("res") or {}
        if res.get("changed"):
            stats.changed += 1
            progress.changes.append(f"{host}: {data.get('task', '')}" + "".join(
                "\n" + _unified(d) for d in _diff_list(res.get("diff"))))
    elif kind == "runner_on_failed" and host:
        if data.get("ignore_errors"):
            progress.host(host).ignored += 1
        else:
            progress.host(host).failed += 1
            msg = str((data.get("res") or {}).get("msg", "")).splitlines()
            progress.messages.append(f"{host}: {data.get('task', '')}: {msg[0] if msg else 'failed'}")
    elif kind == "runner_on_unreachable" and host:
        progress.host(host).unreachable += 1
        msg = str((data.get("res") or {}).get("msg", "")).splitlines()
        progress.messages.append(f"{host}: unreachable: {msg[0] if msg else ''}")
    elif kind == "runner_on_skipped" and host:
        progress.host(host).skipped += 1
    elif kind == "playbook_on_stats":
        # the authoritative totals
        final: dict[str, HostStats] = {}
        for key, attr in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"), ("dark", "unreachable"),
                          ("skipped", "skipped"), ("rescued", "rescued"), ("ignored", "ignored")):
            for h, n in (data.get(key) or {}).items():
                setattr(final.setdefault(h, HostStats()), attr, n)
        progress.hosts = final


def ansible_env(code: Path, root: Path, bindir: Path, envvars: dict | None = None) -> dict[str, str]:
    """The environment of every Ansible run: the venv's binaries first, the project's ansible.cfg and
    roles, the fact cache in the project's .aiinfra/facts (ansible.cfg's relative
    ``fact_caching_connection`` would resolve against the run's working folder;
    ``ANSIBLE_CACHE_PLUGIN_CONNECTION`` is the variable ansible-core reads for it: config/base.yml
    CACHE_PLUGIN_CONNECTION), no colour; ``envvars`` last."""
    return {
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(code / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(code / "roles"),
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(root / ".aiinfra" / "facts"),
        "ANSIBLE_FORCE_COLOR": "0",
        **(envvars or {}),
    }


#: Mitogen's strategies (the ``mitogen`` package on PyPI, ``pip install 'aiinfra[mitogen]'``): one
#: persistent Python per host instead of an SSH channel and a fresh interpreter per task; 9-12x
#: over Ansible's defaults on the 16-host no-change run (docs/benchmarks.md, "Ansible fan-out").
MITOGEN_STRATEGY = "mitogen_linear"


def mitogen_env() -> dict[str, str]:
    """The environment that runs a playbook under Mitogen's linear strategy (its strategy plugins
    from the installed ``ansible_mitogen`` package); DeployError when Mitogen is not installed.
    Opt-in: ansible-core 2.19 warns that third-party strategy plugins are deprecated."""
    import importlib.util

    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        raise DeployError("--mitogen: Mitogen is not installed in this environment "
                          "(pip install 'aiinfra[mitogen]', or pip install mitogen==0.3.54)")
    strategies = Path(next(iter(spec.submodule_search_locations))) / "plugins" / "strategy"
    if not (strategies / f"{MITOGEN_STRATEGY}.py").is_file():
        raise DeployError(f"--mitogen: {strategies} has no {MITOGEN_STRATEGY} strategy")
    return {"ANSIBLE_STRATEGY_PLUGINS": str(strategies), "ANSIBLE_STRATEGY": MITOGEN_STRATEGY}


def run_site(
    cluster: Cluster,
    root: Path,
    *,
    limit: str | None = None,
    tags: str | None = None,
    check: bool = False,
    extra_vars: list[str] | None = None,
    inventories: list[Path] | None = None,
    forks: int | None = None,
    on_event: Callable[[Progress], None] | None = None,
    playbook: str = "site.yml",
    envvars: dict[str, str] | None = None,
    keep_runs: int = KEEP_RUNS,
) -> RunResult:
    """Run playbooks/<playbook> over the cluster's rendered inventory (plus ``inventories``).
    The run folder keeps no environment and no ``-e`` value; the newest ``keep_runs`` are kept."""

    code = code_root(root)
    playbook_path = code / "playbooks" / playbook
    inventory = paths.manifests_dir(cluster.env, root) / INVENTORY_FILE
    for path in (playbook_path, inventory):
        if not path.is_file():
            raise DeployError(f"{path} not found")
    if limit:  # before a run folder is made: a limit that names no host is a usage error
        from aiinfra.render.inventory import inventory_model

        model = inventory_model(cluster)
        limit = resolve_limit(limit, model.groups, model.hostvars, strict=not inventories)
    private = new_private_data_dir(root)
    prune_runs(root, keep_runs)
    # ansible-runner drops its limit/tags/forks arguments when a cmdline is given, so every option
    # travels in the cmdline.
    cmdline = []
    if check:
        cmdline += ["--check", "--diff"]
    if limit is None and any(st.state == "down" for g in cluster.groups.values() for st in g.states.values()):
        limit = "all:!node_down"  # nodes down for repair are left alone unless --limit names them
    if limit:
        cmdline += ["--limit", _quote(limit)]
    if tags:
        cmdline += ["--tags", _quote(tags)]
    if forks:
        cmdline += ["--forks", str(forks)]
    for value in extra_vars or []:
        cmdline += ["--extra-vars", _quote(_abs_extra_vars(value))]
    bindir = Path(sys.executable).parent  # the venv's ansible-playbook, whether or not it is activated
    if not (bindir / "ansible-playbook").exists() and not shutil.which("ansible-playbook"):
        raise DeployError("ansible-playbook not found: install ansible-core into this environment")
    env = ansible_env(code, root, bindir, envvars)
    progress = Progress()
    scrubbed = False

    def event_handler(event: dict) -> bool:
        nonlocal scrubbed
        if not scrubbed:  # the command file is written before the playbook starts: hide it at once
            scrub_command_file(private)
            scrubbed = True
        handle_event(progress, event)
        if on_event:
            on_event(progress)
        return True

    started = time.monotonic()
    runner = _runner(private, env, inventory, inventories, root, cmdline, code, event_handler,
                     playbook=str(playbook_path))
    messages = progress.messages
    if runner.rc and not progress.hosts:  # ansible-playbook failed before any host: show why
        tail = (runner.stdout.read() if runner.stdout else "").strip().splitlines()[-5:]
        messages = [*messages, *tail]
    return RunResult(
        rc=runner.rc if runner.rc is not None else 1,
        status=runner.status,
        hosts=progress.hosts,
        private_data_dir=private,
        elapsed_s=time.monotonic() - started,
        messages=messages,
        changes=progress.changes,
    )


# ------------------------------------------------------------------ one module, ad hoc (aiinfra node)


@dataclass
class ModuleResult:
    """What one module did on one host: the ``command`` module's exit status and output, or why the
    host could not run it (``unreachable``, or a module failure before the command ran: ``msg``)."""

    host: str
    rc: int
    stdout: str = ""
    stderr: str = ""
    msg: str = ""
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.unreachable

    @property
    def why(self) -> str:
        """The first line that says what went wrong (stderr, stdout, then the module's message)."""
        for text in (self.stderr, self.stdout, self.msg):
            lines = [line for line in text.strip().splitlines() if line.strip()]
            if lines:
                return lines[-1].strip()
        return f"exit {self.rc}"


def run_module(
    cluster: Cluster,
    root: Path,
    hosts: str,
    module: str,
    args: dict,
    *,
    extra_vars: list[str] | None = None,
    inventories: list[Path] | None = None,
    timeout_s: int | None = None,
    envvars: dict[str, str] | None = None,
    keep_runs: int = KEEP_RUNS,
) -> dict[str, ModuleResult]:
    """Run one Ansible module on ``hosts`` (a pattern of the rendered inventory), ad hoc, with the
    same inventory, configuration and run folder (kept and scrubbed alike) as :func:`run_site`.

    ``args`` travel as one JSON object (``ansible -a '{...}'``, which ansible-core's adhoc CLI
    reads as JSON when it starts with ``{``), so ``{"argv": [...]}`` reaches the ``command`` module
    without any shell quoting. Returns one result per host that answered or was unreachable."""

    code = code_root(root)
    inventory = paths.manifests_dir(cluster.env, root) / INVENTORY_FILE
    if not inventory.is_file():
        raise DeployError(f"{inventory} not found")
    bindir = Path(sys.executable).parent
    if not (bindir / "ansible").exists() and not shutil.which("ansible"):
        raise DeployError("ansible not found: install ansible-core into this environment")
    private = new_private_data_dir(root)
    prune_runs(root, keep_runs)
    cmdline = []
    for value in extra_vars or []:
        cmdline += ["--extra-vars", _quote(_abs_extra_vars(value))]
    env = ansible_env(code, root, bindir, envvars)
    results: dict[str, ModuleResult] = {}
    scrubbed = False

    def event_handler(event: dict) -> bool:
        nonlocal scrubbed
        if not scrubbed:
            scrub_command_file(private)
            scrubbed = True
        kind = event.get("event", "")
        data = event.get("event_data", {}) or {}
        host = data.get("host") or data.get("remote_addr")
        res = data.get("res") or {}
        if host and kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            rc = res.get("rc")
            results[host] = ModuleResult(
                host=host,
                rc=int(rc) if isinstance(rc, int) else (0 if kind == "runner_on_ok" else 1),
                stdout=str(res.get("stdout", "")), stderr=str(res.get("stderr", "")), msg=str(res.get("msg", "")),
                unreachable=kind == "runner_on_unreachable")
        return True

    runner = _runner(private, env, inventory, inventories, root, cmdline, code, event_handler,
                     module=module, module_args=json.dumps(args, sort_keys=True), host_pattern=hosts,
                     timeout=timeout_s)
    if not results and runner.rc:  # ansible failed before any host (bad pattern, bad inventory): say why
        tail = (runner.stdout.read() if runner.stdout else "").strip().splitlines()[-3:]
        raise DeployError(f"ansible {module} on '{hosts}' failed before reaching a host ({runner.status}, rc "
                          f"{runner.rc}): {' | '.join(tail) or 'no output'}; artifacts: {private}")
    return results


def _runner(private: Path, env: dict, inventory: Path, inventories, root: Path, cmdline: list[str], code: Path,
            event_handler, **what) -> Any:
    """ansible_runner.run as every aiinfra run calls it (a playbook or an ad-hoc module: ``what``):
    ansible-playbook looked up on ``env``'s PATH, arguments kept in memory (env/envvars, env/extravars,
    env/cmdline never written: suppress_env_files), the command file scrubbed afterwards."""
    import ansible_runner  # imported when a run starts: the CLI starts faster without it

    saved_path = os.environ.get("PATH", "")
    os.environ["PATH"] = env["PATH"]  # ansible-runner looks ansible-playbook up in its own PATH
    try:
        return ansible_runner.run(
            private_data_dir=str(private),
            inventory=[str(inventory.resolve()), *[str(Path(i).resolve()) for i in inventories or []]],
            extravars={"aiinfra_project_root": str(root)},
            cmdline=" ".join(cmdline) or None,
            envvars=env,
            event_handler=event_handler,
            quiet=True,
            project_dir=str(code),
            suppress_env_files=True,
            **what,
        )
    finally:
        os.environ["PATH"] = saved_path
        scrub_command_file(private)


def run_command(cluster: Cluster, root: Path, host: str, argv: list[str], **options) -> ModuleResult:
    """Run ``argv`` (no shell) on one host of the inventory with ``ansible.builtin.command``."""
    results = run_module(cluster, root, host, "ansible.builtin.command", {"argv": argv}, **options)
    if host not in results:
        raise DeployError(f"ansible ran nothing on {host}: is it in manifests/{cluster.env}/{INVENTORY_FILE}?")
    return results[host]
