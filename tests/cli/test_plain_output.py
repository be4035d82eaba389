"""Without a terminal the CLI writes plain text: no escape sequence in a pipe or on TERM=dumb, and
``hosts up`` prints a progress line per task instead of a live display."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aiinfra.deploy.ansible import HostStats, Progress, RunResult
from conftest import ROOT

AIINFRA = [sys.executable, "-m", "aiinfra.cli"]
NCCL = ROOT / "tests" / "training" / "fixtures" / "nccl" / "passing"
# a CI runner's environment: typer's rich help would colour it; FORCE_COLOR is a request for colour
CI_ENV = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "PY_COLORS")}
CI_ENV |= {"GITHUB_ACTIONS": "true", "TERM": "xterm-256color", "COLUMNS": "80"}


@pytest.fixture(scope="module")
def nccl_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nccl")
    for sample in NCCL.glob("*.node.gpu00[12].out"):  # prod's gpu001 and gpu002
        (folder / sample.name).write_text(sample.read_text())
    return folder


def _pipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*AIINFRA, *args], cwd=ROOT, env=CI_ENV, capture_output=True, text=True, timeout=120)


def test_no_escape_sequences_in_a_pipe(nccl_dir):
    runs = {
        "validate": _pipe("validate", "--stack", "prod"),
        "show": _pipe("show", "--stack", "dev"),
        "render --check": _pipe("render", "--check", "--stack", "dev"),
        "fabric check": _pipe("fabric", "check", "--stack", "prod", str(nccl_dir)),
        "help": _pipe("hosts", "up", "--help"),
        "usage error": _pipe("validate", "--no-such-option"),
        "refusal": _pipe("validate", "--stack", "nosuchenv"),
    }
    for name, r in runs.items():
        assert r.stdout or r.stderr, name
        assert "\x1b[" not in r.stdout + r.stderr, f"{name}: {(r.stdout + r.stderr)[:400]!r}"
    assert runs["usage error"].returncode == 2 and runs["refusal"].returncode == 2
    assert "node(s) passed" in runs["fabric check"].stdout


def _in_a_terminal(env: dict[str, str], *args: str) -> str:
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*AIINFRA, *args], cwd=ROOT, env=env, stdin=follower, stdout=follower,
                            stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode()


def test_a_dumb_terminal_gets_plain_text_and_a_real_one_colour():
    plain = _in_a_terminal(CI_ENV | {"TERM": "dumb"}, "validate", "--stack", "prod")
    coloured = _in_a_terminal(CI_ENV, "validate", "--stack", "prod")
    assert "warning[" in plain and "\x1b[" not in plain
    assert "\x1b[" in coloured  # the same run on a terminal is coloured: the check above can fail


# ------------------------------------------------------------------ hosts up, without ansible


def _stats(status: str) -> HostStats:
    return {"ok": HostStats(ok=5), "changed": HostStats(ok=5, changed=2), "failed": HostStats(ok=1, failed=1),
            "unreachable": HostStats(unreachable=1)}[status]


@pytest.fixture
def fake_site(monkeypatch, tmp_path):
    """`hosts up` over a fake run_site: two tasks of events, then the recap given."""
    import aiinfra.deploy.ansible as ansible

    def install(hosts: dict[str, HostStats], rc: int, messages: list[str] | None = None):
        def run_site(cluster, root, *, on_event, **_):
            for task in ("munge : install", "slurm : configure"):
                progress = Progress(play="slurm compute", task=task, hosts=dict(hosts))
                on_event(progress)
                on_event(progress)  # more events of the same task: no second line
            return RunResult(rc=rc, status="failed" if rc else "successful", hosts=hosts,
                             private_data_dir=tmp_path, elapsed_s=1.0, messages=messages or [])

        monkeypatch.setattr(ansible, "run_site", run_site)
        monkeypatch.setattr(ansible, "ensure_fresh", lambda *a: "manifests up to date")

    return install


def test_hosts_up_table_and_summary_agree(aiinfra, fake_site):
    hosts = {"gpu01": _stats("ok"), "gpu02": _stats("changed"), "gpu03": _stats("failed"),
             "gpu04": _stats("unreachable"), "gpu05": _stats("failed")}
    fake_site(hosts, rc=2)
    r = aiinfra("hosts", "up", "--stack", "dev")
    assert r.code == 1
    assert "\x1b[" not in r.stdout + r.stderr
    progress = [line for line in r.stdout.splitlines() if line.startswith("slurm compute | ")]
    assert [p.split(" (")[0] for p in progress] == ["slurm compute | munge : install",
                                                    "slurm compute | slurm : configure"]
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in r.stdout.splitlines()
            if line.startswith("│") and line.split("│")[1].strip().startswith("gpu")]
    summary = next(line for line in r.stdout.splitlines() if line.startswith(f"{len(hosts)} host(s)"))
    for status in ("ok", "changed", "failed", "unreachable"):
        in_table = sum(1 for row in rows if row[1] == status)
        assert re.search(rf"\b{in_table} {status}\b", summary), (status, summary)
    assert "gpu[03-05]" in r.stderr and "failed: -" not in r.stderr


def test_hosts_up_that_reached_no_host_says_so(aiinfra, fake_site):
    fake_site({}, rc=4, messages=["ERROR! the playbook could not be parsed"])
    r = aiinfra("hosts", "up", "--stack", "dev")
    assert r.code == 1 and "ERROR! the playbook" in r.stderr
    assert "before reaching a host" in r.stderr and "failed: -" not in r.stderr


# ------------------------------------------------------------------ --limit


def test_limit_to_an_unknown_host_is_a_usage_error(aiinfra, monkeypatch, dev):
    import aiinfra.deploy.ansible as ansible

    monkeypatch.setattr(ansible, "ensure_fresh", lambda *a: "manifests up to date")
    monkeypatch.setattr(ansible, "new_private_data_dir", lambda root: pytest.fail("no run folder for a bad limit"))
    host = sorted(dev.cluster.hosts)[0]
    r = aiinfra("hosts", "up", "--stack", "dev", "--limit", host + "x")
    assert r.code == 2, r.stderr
    assert f"did you mean '{host}'" in r.stderr and "Traceback" not in r.stderr


def test_limit_expands_hostlists_and_checks_every_term(dev):
    from aiinfra.deploy.ansible import resolve_limit
    from aiinfra.errors import UsageError
    from aiinfra.render.inventory import inventory_model
    from aiinfra.render.templates import fold

    model = inventory_model(dev.cluster)
    gpus = [h for h in model.hostvars if h in model.groups["gpu_nodes"]]
    assert len(gpus) > 1
    # Ansible reads gpu[01-02] as a subscript of a group "gpu": aiinfra hands it the host names
    assert resolve_limit(fold(gpus), model.groups, model.hostvars).split(",") == sorted(gpus)
    # Ansible's own patterns pass unchanged (its ':' and ',' separate terms alike)
    for pattern in ("all,!node_down", "gpu_nodes[0:1]", "gpu*", "~^gpu", "gpu_nodes,&su01"):
        assert resolve_limit(pattern, model.groups, model.hostvars) == pattern
    assert resolve_limit("all:!node_down", model.groups, model.hostvars) == "all,!node_down"
    for typo, meant in (("all:!node_dwn", "node_down"), ("gpu_node", "gpu_nodes")):
        with pytest.raises(UsageError, match=f"did you mean '{meant}'"):
            resolve_limit(typo, model.groups, model.hostvars)
    with pytest.raises(UsageError, match="no host or group"):
        resolve_limit(fold([*gpus, "gpu99"]), model.groups, model.hostvars)
    # beside another inventory, a name this one lacks may be that one's
    assert resolve_limit("gpu99", model.groups, model.hostvars, strict=False) == "gpu99"
