"""Ansible fan-out: playbooks/site.yml over the Slurm test bed with the shipped ansible.cfg vs
Ansible's defaults.

Brings up the test bed of tests/fixtures/slurm-testbed (network namespaces + sshd, as the real
Slurm test), converges it once, then times no-change runs of the whole site playbook, alternating
the shipped ansible.cfg (pipelining, forks, ControlPersist, no fact gathering) and a config with
only roles_path set (Ansible's defaults). Needs root and the packages of .ci/apt-packages.txt.

    sudo .venv/bin/python benchmarks/ansible_fanout.py [--rounds 2] [--json out.json]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from aiinfra.deploy.ansible import ensure_fresh, run_site  # noqa: E402
from aiinfra.pipeline import build_file  # noqa: E402
from harness import slurm_testbed as st  # noqa: E402
from harness.testbed import Testbed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="timed runs per configuration")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    reason = st.missing_requirements()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="aiinfra-fanout-"))
    root = st.prepare_root(work / "root")
    os.environ["AIINFRA_ROOT"] = str(root)
    os.chdir(root)
    cluster = build_file(root / "stacks" / f"Pulumi.{st.STACK}.yaml", f"stacks/Pulumi.{st.STACK}.yaml").cluster
    ensure_fresh(cluster, root, render=True)
    defaults_cfg = work / "defaults.cfg"
    # Ansible's defaults, plus what this machine needs to work at all: the roles, and the system
    # Python (discovery would pick a pyenv shim here)
    defaults_cfg.write_text(f"[defaults]\nroles_path = {ROOT / 'roles'}\ninterpreter_python = /usr/bin/python3\n")
    configs = {"shipped ansible.cfg": {}, "Ansible defaults": {"ANSIBLE_CONFIG": str(defaults_cfg)}}

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


if __name__ == "__main__":
    sys.exit(main())
