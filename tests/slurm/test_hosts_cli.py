"""`aiinfra hosts up` without hosts: stale manifests are refused, runner events are counted, and an
unreachable host makes the run fail with a per-host table and kept artifacts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aiinfra.deploy.ansible import (
    HostStats,
    Progress,
    ansible_env,
    handle_event,
    mitogen_env,
    new_private_data_dir,
)
from conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "slurm-testbed"


def aiinfra(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, AIINFRA_ROOT=str(root), COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "aiinfra.cli", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=180)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "root")
    return tmp_path / "root"


def test_refuses_stale_manifests(root):
    out = aiinfra(root, "hosts", "up", "--stack", "testbed")
    assert out.returncode == 1
    assert "manifests/testbed is stale" in out.stderr and "--render" in out.stderr
    assert not (root / ".aiinfra" / "runs").exists()


def test_unreachable_host_fails_the_run(root):
    out = aiinfra(root, "hosts", "up", "--stack", "testbed", "--render", "--limit", "gpu01", "--tags", "munge",
                  "-e", "ansible_host=127.0.0.1", "-e", "ansible_port=9", "-e", "munge_key=" + "k" * 40)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "rendered manifests/testbed" in out.stdout
    row = next(line for line in out.stdout.splitlines() if "gpu01" in line)
    assert "unreachable" in row
    runs = list((root / ".aiinfra" / "runs").iterdir())
    assert len(runs) == 1 and list(runs[0].glob("artifacts/*/job_events/*.json"))
    assert "gpu01" in out.stderr  # the failed hosts are named


def test_events_fold_into_per_host_counts():
    progress = Progress()
    for event in (
        {"event": "playbook_on_play_start", "event_data": {"name": "slurm"}},
        {"event": "playbook_on_task_start", "event_data": {"task": "Start slurmd"}},
        {"event": "runner_on_ok", "event_data": {"host": "gpu01", "res": {"changed": True}}},
        {"event": "runner_on_ok", "event_data": {"host": "gpu02", "res": {"changed": False}}},
        {"event": "runner_on_failed", "event_data": {"host": "gpu03", "task": "Start slurmd", "res": {"msg": "boom"}}},
        {"event": "runner_on_failed", "event_data": {"host": "gpu04", "ignore_errors": True, "res": {}}},
    ):
        handle_event(progress, event)
    assert (progress.play, progress.task) == ("slurm", "Start slurmd")
    assert progress.hosts["gpu01"].status == "changed" and progress.hosts["gpu02"].status == "ok"
    assert progress.hosts["gpu03"].status == "failed" and progress.hosts["gpu04"].status == "ok"
    assert progress.messages == ["gpu03: Start slurmd: boom"]
    handle_event(progress, {"event": "playbook_on_stats", "event_data": {
        "ok": {"gpu01": 3}, "changed": {"gpu01": 1}, "dark": {"gpu02": 1}, "failures": {}}})
    assert progress.hosts == {"gpu01": HostStats(ok=3, changed=1), "gpu02": HostStats(unreachable=1)}


def test_private_data_dirs_are_fresh(tmp_path: Path):
    first, second = new_private_data_dir(tmp_path), new_private_data_dir(tmp_path)
    assert first != second and first.parent == tmp_path / ".aiinfra" / "runs"


BIN = Path(sys.executable).parent


def resolved_settings(env: dict[str, str], cwd: Path) -> dict:
    """The settings ansible-core resolves (``ansible-config dump --only-changed``) in ``env``, run from ``cwd``."""
    out = subprocess.run([str(BIN / "ansible-config"), "dump", "--only-changed", "--format", "json"],
                         cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {entry["name"]: entry["value"] for entry in json.loads(out.stdout) if "name" in entry}


def test_ansible_reads_the_runs_settings_from_their_environment(tmp_path):
    """What ansible-core itself resolves from the environment every run gets (ansible-config, run from
    another folder, as ansible-runner runs it): the project's config and roles, the fact cache in
    the project's .aiinfra/facts rather than wherever the run's working folder is."""
    root = tmp_path / "site"
    values = resolved_settings(ansible_env(ROOT, root, BIN), tmp_path)
    assert values["CACHE_PLUGIN_CONNECTION"] == str(root / ".aiinfra" / "facts")
    assert values["CACHE_PLUGIN"] == "jsonfile"  # ansible.cfg's fact_caching
    assert values["DEFAULT_ROLES_PATH"] == [str(ROOT / "roles")]


def test_mitogen_runs_a_play_with_its_strategy(tmp_path):
    """``hosts up --mitogen``'s environment, for real: ansible-core loads Mitogen's linear strategy
    from the installed package and a play runs to the end under it (a local connection: the
    16-host measurement over sshd is benchmarks/ansible_fanout.py's)."""
    pytest.importorskip("ansible_mitogen", reason="Mitogen is not installed (pip install 'aiinfra[mitogen]')")
    env = ansible_env(ROOT, tmp_path / "site", BIN, mitogen_env())
    assert resolved_settings(env, tmp_path)["DEFAULT_STRATEGY"] == "mitogen_linear"
    play = tmp_path / "play.yml"
    made = tmp_path / "made"
    play.write_text(yaml.safe_dump([{"name": "one host", "hosts": "all", "gather_facts": False, "tasks": [
        {"name": "a file", "ansible.builtin.copy": {"content": "mitogen\n", "dest": str(made), "mode": "0644"}},
        {"name": "a command", "ansible.builtin.command": "cat " + str(made), "register": "out", "changed_when": False},
        {"name": "what it read", "ansible.builtin.assert": {"that": ["out.stdout == 'mitogen'"]}}]}]))
    inventory = tmp_path / "inventory.yml"  # the yaml plugin (ansible.cfg enables yaml and script only)
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"here": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(play)],
                         cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ok=3" in run.stdout and "changed=1" in run.stdout, run.stdout[-2000:]
    assert made.read_text() == "mitogen\n"
