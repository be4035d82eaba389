"""Ansible fan-out: playbooks/site.yml over the Slurm test bed with the shipped ansible.cfg vs
Ansible's defaults.

Brings up the test bed of tests/fixtures/slurm-testbed (network namespaces + sshd, as the real
Slurm test), converges it once, then times no-change runs of the whole site playbook, alternating
the shipped ansible.cfg (pipelining, forks, ControlPersist, no fact gathering) and a config with
only roles_path set (Ansible's defaults). Needs root and the packages of .ci/apt-packages.txt.

    sudo .venv/bin/python benchmarks/ansible_fanout.py [--rounds 2] [--json out.json] [--mitogen DIR]

With --hosts N (16 or more for issue 17's target), a bed of N plain hosts instead: the same
namespaces and sshd, a playbook shaped like the host layers of site.yml (plays without fact
gathering, a role's guarded `setup` of the OS family, files, a line, a read-only command, a stat
and an assert; per-host paths, as the hosts share this machine's file system), converged once,
then no-change runs per configuration, each adding one change to Ansible's defaults (interpreter
discovery off, fact cache, pipelining, forks, free strategy), then the shipped ansible.cfg alone
and with Mitogen's strategies, so that the run says what each change bought:

    sudo .venv/bin/python benchmarks/ansible_fanout.py --hosts 16 [--rounds 1] [--mitogen DIR]

--mitogen DIR: a directory holding the mitogen package (pip install --target DIR mitogen); adds
the shipped config with mitogen_linear and with mitogen_free (opt-in, docs/benchmarks-ansible.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from aiinfra.deploy.ansible import ensure_fresh, mitogen_env, run_site  # noqa: E402
from aiinfra.pipeline import build_file  # noqa: E402
from harness import slurm_testbed as st  # noqa: E402
from harness.testbed import Testbed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="timed runs per configuration")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--hosts", type=int, help="a bed of this many plain hosts (see above)")
    parser.add_argument("--mitogen", type=Path, help="directory holding the mitogen package (adds its configurations)")
    args = parser.parse_args()
    if args.hosts:
        return plain_bed(args)
    reason = st.missing_requirements()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="aiinfra-fanout-"))
    root = st.prepare_root(work / "root")
    os.environ["AIINFRA_ROOT"] = str(root)
    os.chdir(root)
    built = build_file(root / "stacks" / f"Pulumi.{st.STACK}.yaml", f"stacks/Pulumi.{st.STACK}.yaml")
    cluster = built.cluster
    ensure_fresh(cluster, built.plan, root, render=True)
    defaults_cfg = work / "defaults.cfg"
    # Ansible's defaults, plus what this machine needs to work at all: the roles, and the system
    # Python (discovery would pick a pyenv shim here)
    defaults_cfg.write_text(f"[defaults]\nroles_path = {ROOT / 'roles'}\ninterpreter_python = /usr/bin/python3\n")
    configs = {"shipped ansible.cfg": {}, "Ansible defaults": {"ANSIBLE_CONFIG": str(defaults_cfg)}}
    if args.mitogen:
        # the bed's ssh options skip host keys (throwaway ones); Mitogen applies host_key_checking
        # itself, before those options, so it is turned off for its run the same way
        # (the environment `aiinfra hosts up --mitogen` runs with: mitogen_env, from the package in DIR)
        sys.path.insert(0, str(args.mitogen))
        configs["shipped ansible.cfg + Mitogen (mitogen_linear)"] = {
            **mitogen_env(), "ANSIBLE_HOST_KEY_CHECKING": "False", "PYTHONPATH": str(args.mitogen)}

    testbed = Testbed(st.hosts_from_inventory(root), work / "testbed", st.GATEWAY)
    nodes = st.compute_nodes(root)
    times: dict[str, list[float]] = {name: [] for name in configs}
    try:
        st.wipe_state()
        st.make_fake_hardware(nodes)
        testbed.up()
        extra = st.write_extra_vars(testbed, testbed.workdir / "vars.yml")
        started = time.monotonic()
        first = run_site(cluster, root, tags="validate,munge,slurm", extra_vars=[f"@{extra}"])
        converge_s = time.monotonic() - started
        if not first.ok:
            print(f"converging run failed: {first.messages}", file=sys.stderr)
            return 1
        for _ in range(args.rounds):
            for name, env in configs.items():
                started = time.monotonic()
                result = run_site(cluster, root, tags="validate,munge,slurm", extra_vars=[f"@{extra}"], envvars=env)
                elapsed = time.monotonic() - started
                if not result.ok or result.changed:
                    print(f"{name}: run failed or changed something: {result.messages}", file=sys.stderr)
                    return 1
                times[name].append(elapsed)
                print(f"{name}: {elapsed:.1f} s", flush=True)
    finally:
        testbed.down(compute_first=nodes)

    tasks = sum(s.ok + s.changed + s.skipped for s in first.hosts.values())
    out = {
        "hosts": len(testbed.hosts),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "converging_run_s": round(converge_s, 1),
        "host_tasks_per_run": tasks,
        "no_change_run_s": {name: {"median": round(statistics.median(v), 1), "runs": [round(x, 1) for x in v]}
                            for name, v in times.items()},
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


# ------------------------------------------------------------------ a bed of plain hosts (--hosts N)

PLAIN_GATEWAY = "10.79.0.1/24"


def plain_workload(base: str) -> list[dict]:
    """Three plays shaped like site.yml's host layers (no fact gathering; a role's guarded `setup`)."""
    where = f"{base}/{{{{ inventory_hostname }}}}"

    def play(layer: int) -> dict:
        d = f"{where}/layer{layer}"
        return {"name": f"Layer {layer}", "hosts": "all", "gather_facts": False, "tasks": [
            {"name": "Gather the OS family", "ansible.builtin.setup": {"gather_subset": ["!all", "!min", "distribution"]},
             "when": "ansible_facts['os_family'] is not defined"},
            {"name": "Directory", "ansible.builtin.file": {"path": d, "state": "directory", "mode": "0755"}},
            {"name": "A file", "ansible.builtin.copy": {"dest": f"{d}/static.conf", "content": "enabled = 1\n",
                                                        "mode": "0644"}},
            {"name": "A file from a template", "ansible.builtin.copy": {
                "dest": f"{d}/host.conf", "mode": "0644",
                "content": "{{ inventory_hostname }} {{ ansible_facts['os_family'] }}\n"}},
            {"name": "A line", "ansible.builtin.lineinfile": {"path": f"{d}/lines", "line": "option=1", "create": True,
                                                              "mode": "0644"}},
            {"name": "Read the state", "ansible.builtin.command": {"argv": ["cat", f"{d}/static.conf"]},
             "changed_when": False},
            {"name": "Stat", "ansible.builtin.stat": {"path": f"{d}/host.conf"}, "register": "_fanout_stat"},
            {"name": "Assert", "ansible.builtin.assert": {"that": ["_fanout_stat.stat.exists"], "quiet": True}},
        ]}

    return [play(i) for i in (1, 2, 3)]


def _recap(stdout: str) -> dict[str, dict[str, int]]:
    import re

    return {m[1]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m[2])}
            for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", stdout, flags=re.M)}


def _mitogen_version(path: Path) -> str:
    return next((metadata.PathDistribution(d).version for d in path.glob("mitogen-*.dist-info")), "?")


def plain_bed(args) -> int:
    import shutil
    import subprocess

    import yaml

    from harness.testbed import REQUIRED_BINARIES, Host, missing_binaries

    missing = missing_binaries(REQUIRED_BINARIES)
    if os.geteuid() != 0 or missing:
        print(f"cannot run: needs root and {', '.join(REQUIRED_BINARIES)} (missing: {missing})", file=sys.stderr)
        return 2
    n = args.hosts
    work = Path(tempfile.mkdtemp(prefix="aiinfra-fanout-"))
    files = Path(f"/tmp/aiinfra-fanout-files-{os.getpid()}")
    hosts = [Host(f"fan{i:02d}", f"10.79.0.{10 + i}") for i in range(1, n + 1)]
    testbed = Testbed(hosts, work / "testbed", PLAIN_GATEWAY)
    playbook = work / "workload.yml"
    playbook.write_text(yaml.safe_dump(plain_workload(str(files)), sort_keys=False))
    inventory = work / "inventory.json"
    # Host keys are checked (Ansible's default and the shipped config's), against a known_hosts file
    # of the bed's host key, written once the bed is up; Mitogen enforces them the same way.
    known_hosts = work / "known_hosts"
    ssh_args = (f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes -o LogLevel=ERROR "
                "-o BatchMode=yes -o ConnectTimeout=5")
    inventory.write_text(json.dumps({"all": {"hosts": {h.name: {"ansible_host": h.address} for h in hosts}, "vars": {
        "ansible_user": "root", "ansible_ssh_private_key_file": str(testbed.key), "ansible_ssh_common_args": ssh_args,
        # interpreter discovery stays on in the defaults, but its list of candidates is cut to the
        # system Python: the first default candidates are pyenv shims here, which fail
        "ansible_interpreter_python_fallback": ["/usr/bin/python3"]}}}))
    defaults_cfg = work / "defaults.cfg"
    defaults_cfg.write_text("[defaults]\n")  # Ansible's defaults
    facts = {"ANSIBLE_GATHERING": "smart", "ANSIBLE_CACHE_PLUGIN": "jsonfile",
             "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(work / "facts"), "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "86400"}
    steps = [("Ansible defaults", {}),
             ("+ interpreter_python (no discovery)", {"ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"}),
             ("+ fact cache", facts), ("+ pipelining", {"ANSIBLE_PIPELINING": "True"}),
             (f"+ forks = {n}", {"ANSIBLE_FORKS": str(n)}), ("+ free strategy", {"ANSIBLE_STRATEGY": "free"})]
    configs: list[tuple[str, dict]] = []
    env: dict = {"ANSIBLE_CONFIG": str(defaults_cfg)}
    for label, change in steps:
        env = {**env, **change}
        configs.append((label, env))
    shipped = {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
               "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(work / "facts")}
    configs.append(("shipped ansible.cfg (linear)", shipped))
    if args.mitogen:
        # opt-in, docs/benchmarks-ansible.md: Mitogen's strategies over the shipped config; one
        # persistent Python per host instead of an ssh session and a Python start per task
        mitogen = {**shipped, "ANSIBLE_STRATEGY_PLUGINS": str(args.mitogen / "ansible_mitogen" / "plugins" / "strategy"),
                   "PYTHONPATH": str(args.mitogen)}
        configs.append(("shipped + Mitogen (mitogen_linear)", {**mitogen, "ANSIBLE_STRATEGY": "mitogen_linear"}))
        configs.append(("shipped + Mitogen (mitogen_free)", {**mitogen, "ANSIBLE_STRATEGY": "mitogen_free"}))
    bindir = Path(sys.executable).parent
    base_env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_LOCAL_TEMP": str(work / "tmp"), "ANSIBLE_RETRY_FILES_ENABLED": "False"}

    def play(extra: dict) -> tuple[float, dict]:
        started = time.monotonic()
        out = subprocess.run([str(bindir / "ansible-playbook"), "-i", str(inventory), str(playbook)],
                             env={**base_env, **extra}, capture_output=True, text=True, timeout=1800)
        elapsed = time.monotonic() - started
        recap = _recap(out.stdout)
        if out.returncode != 0 or len(recap) != n:
            raise RuntimeError(f"ansible-playbook failed: {(out.stdout + out.stderr)[-3000:]}")
        return elapsed, recap

    times: dict[str, list[float]] = {label: [] for label, _ in configs}
    load_before = [round(x, 1) for x in os.getloadavg()]
    try:
        testbed.up()
        key = (testbed.workdir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        known_hosts.write_text("".join(f"{h.address} {' '.join(key)}\n" for h in hosts))
        converge_s, recap = play(shipped)
        play(facts | {"ANSIBLE_CONFIG": str(defaults_cfg)})  # the fact cache primed, as after any earlier run
        for _ in range(args.rounds):
            for label, extra in configs:
                elapsed, recap = play(extra)
                changed = sum(r.get("changed", 0) for r in recap.values())
                if changed:
                    raise RuntimeError(f"{label}: the no-change run changed {changed} host-tasks")
                times[label].append(elapsed)
                print(f"{label}: {elapsed:.1f} s", flush=True)
    finally:
        testbed.down()
        shutil.rmtree(files, ignore_errors=True)
    base = statistics.median(times["Ansible defaults"])
    out = {
        "hosts": n,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "ansible_core": metadata.version("ansible-core"),
        "mitogen": _mitogen_version(args.mitogen) if args.mitogen else None,
        "load_average_1_5_15_min": {"before": load_before, "after": [round(x, 1) for x in os.getloadavg()]},
        "converging_run_s": round(converge_s, 1),
        "host_tasks_per_run": sum(r.get("ok", 0) + r.get("skipped", 0) for r in recap.values()),
        "no_change_run_s": {label: {"median": round(statistics.median(v), 1), "runs": [round(x, 1) for x in v],
                                    "speedup_over_defaults": round(base / statistics.median(v), 2)}
                            for label, v in times.items()},
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
