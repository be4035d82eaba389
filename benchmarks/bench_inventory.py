"""What Ansible pays to read the rendered inventory: CPU seconds and peak memory of
`ansible-inventory -i <inventory> --graph`, prod (522 hosts) and a 2,058-host blueprint.

Run:  .venv/bin/python benchmarks/bench_inventory.py [--repeat 3] [--bin DIR] [--json out.json]

Cases, each the median of --repeat runs (the YAML layout once: tens of seconds a run):
- tiny: one host, one variable (the floor: interpreter and Ansible start-up);
- before: the YAML layout rendered until issue 17 (every host's variables under `all.hosts`, each
  with its `aiinfra_rails` list, and every group listing its hosts again), read with Ansible's
  default inventory plugins (`auto` reads each file before `yaml` does);
- after: `inventory.json` as `aiinfra render` writes it now, with the shipped ansible.cfg
  (`enable_plugins = yaml, script`), and with Ansible's default plugin list.
CPU is user + system time of the ansible-inventory process (os.wait4), memory its peak RSS.
--bin picks the directory of ansible-inventory (another ansible-core release in its own venv).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_render import synthetic  # noqa: E402

from aiinfra.pipeline import Built, build_file, build_text  # noqa: E402
from aiinfra.render.host_vars import render_host_vars  # noqa: E402
from aiinfra.render.inventory import INVENTORY_FILE, inventory_model, render_inventory  # noqa: E402


def legacy_yaml(built: Built) -> str:
    """The layout rendered until issue 17: YAML, every host's variables (node group and rails
    included) under ``all.hosts``, and every group listing all its hosts."""
    cluster = built.cluster
    model = inventory_model(cluster)

    def flow(value: object) -> str:
        return json.dumps(value, sort_keys=True, separators=(", ", ": "))

    lines = ["all:", "  vars:"] + [f"    {k}: {flow(v)}" for k, v in sorted(model.all_vars.items())] + ["  hosts:"]
    for name, hv in sorted(model.hostvars.items()):
        host = cluster.hosts[name]
        old = {k: v for k, v in hv.items() if k != "aiinfra_rail_addresses"}
        old["aiinfra_node_group"] = host.group
        if host.rails:
            old["aiinfra_rails"] = [{"rail": p.rail, "hca": p.hca, "leaf": p.leaf, "address": p.ipoib_address,
                                     "prefix": p.ipoib_prefix} for p in host.rails]
        lines.append(f"    {name}: {flow(old)}")
    lines.append("  children:")
    for name, hosts in model.groups.items():
        lines.append(f"    {name}:")
        if name in model.group_vars:
            gv = {k: v for k, v in model.group_vars[name].items()
                  if k not in ("aiinfra_node_group", "aiinfra_rail_hcas", "aiinfra_rail_prefix")}
            lines.append(f"      vars: {flow(gv)}")
        lines.append("      hosts:")
        lines += [f"        {h}:" for h in hosts]
    return "\n".join(lines) + "\n"


def write_case(built: Built, dest: Path, legacy: bool) -> Path:
    """The inventory (and its group_vars/all, which Ansible reads beside it) under ``dest``."""
    files = {**render_host_vars(built.cluster, built.plan),
             **({"ansible/inventory.yml": legacy_yaml(built)} if legacy else render_inventory(built.cluster, built.plan))}
    for rel, text in files.items():
        if rel.startswith("ansible/"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_text(text)
    return dest / ("ansible/inventory.yml" if legacy else INVENTORY_FILE)


def run(ansible_inventory: Path, inventory: Path, config: Path, tmp: Path) -> tuple[float, float]:
    """CPU seconds and peak RSS (MiB) of one `ansible-inventory --graph`."""
    env = {"PATH": f"{ansible_inventory.parent}:/usr/bin:/bin", "HOME": str(tmp), "ANSIBLE_CONFIG": str(config),
           "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"), "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    proc = subprocess.Popen([str(ansible_inventory), "-i", str(inventory), "--graph"], cwd=tmp, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ansible-inventory failed on {inventory}: {err[-2000:]}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure(label: str, ansible_inventory: Path, inventory: Path, config: Path, tmp: Path, repeat: int,
            hosts: int) -> dict:
    runs = [run(ansible_inventory, inventory, config, tmp) for _ in range(repeat)]
    row = {"case": label, "hosts": hosts, "bytes": inventory.stat().st_size,
           "cpu_s": round(statistics.median(r[0] for r in runs), 2), "peak_mib": round(max(r[1] for r in runs)),
           "runs": [round(r[0], 2) for r in runs]}
    print(f"{label:<44}{hosts:>6}{row['bytes'] / 1e3:>9.0f} kB{row['cpu_s']:>8.2f} s{row['peak_mib']:>6} MiB",
          flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bin", type=Path, default=Path(sys.executable).parent, help="where ansible-inventory is")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ansible_inventory = args.bin / "ansible-inventory"
    version = subprocess.run([str(ansible_inventory), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(version)
    rows = []
    with tempfile.TemporaryDirectory(prefix="aiinfra-inv-") as name:
        tmp = Path(name)
        shipped = ROOT / "ansible.cfg"
        defaults = tmp / "defaults.cfg"
        defaults.write_text("[defaults]\n")  # Ansible's own inventory plugins: host_list, script, auto, yaml, ini, toml
        tiny = tmp / "tiny" / "inventory.yml"
        tiny.parent.mkdir()
        tiny.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 10.0.0.1\n")
        rows.append(measure("tiny (1 host), shipped cfg", ansible_inventory, tiny, shipped, tmp, args.repeat, 1))
        builds = {"prod": build_file(ROOT / "stacks" / "Pulumi.prod.yaml", "stacks/Pulumi.prod.yaml"),
                  "synthetic-2048": build_text(synthetic(2048), "synthetic-2048", "s2048")}
        for label, built in builds.items():
            hosts = len(built.cluster.hosts)
            before = write_case(built, tmp / label / "before", legacy=True)
            after = write_case(built, tmp / label / "after", legacy=False)
            rows.append(measure(f"{label} before: YAML, default plugins", ansible_inventory, before, defaults, tmp,
                                1, hosts))
            rows.append(measure(f"{label} after: JSON, shipped cfg", ansible_inventory, after, shipped, tmp,
                                args.repeat, hosts))
            rows.append(measure(f"{label} after: JSON, default plugins", ansible_inventory, after, defaults, tmp,
                                args.repeat, hosts))
    floor = rows[0]["cpu_s"]
    out = {"ansible": version, "machine": f"{os.uname().machine}, {os.cpu_count()} CPUs", "rows": rows,
           "prod_after_over_tiny": round(rows[2]["cpu_s"] / floor, 2),
           "prod_before_over_after": round(rows[1]["cpu_s"] / rows[2]["cpu_s"], 1),
           "s2048_before_over_after": round(rows[4]["cpu_s"] / rows[5]["cpu_s"], 1)}
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
