"""``aiinfra fabric check``: the nccl-tests gate before nodes join a partition (:mod:`aiinfra.deploy.acceptance`).

Mounted by :func:`aiinfra.cli._mount_optional` through :func:`register`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aiinfra.errors import UsageError
from aiinfra.pipeline import Built

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _bw(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def register(app: typer.Typer, load: Callable[[str | None, Path | None], Built]) -> None:
    fabric_app = typer.Typer(help="Fabric acceptance: nccl-tests results against the catalog.", no_args_is_help=True)
    app.add_typer(fabric_app, name="fabric")

    @fabric_app.command("check")
    def check(
        results: Annotated[list[Path], typer.Argument(help="nccl-tests output files or folders of them")],
        stack: Annotated[str | None, typer.Option("--stack", "-s", help="environment [default: $AIINFRA_STACK or dev]")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ) -> None:
        """Pass/fail per node from nccl-tests output; exit 1 when a node fails. Prints the resume command."""
        from aiinfra.deploy.acceptance import drain_command, gate, read_results, resume_command
        from aiinfra.plan.acceptance import TESTS

        missing = [str(p) for p in results if not p.exists()]
        if missing:
            raise UsageError(f"no such file or folder: {', '.join(missing)}")
        cluster = load(stack, None).cluster
        runs = read_results(results)
        if not runs:
            raise UsageError("no nccl-tests output found in " + ", ".join(map(str, results)))
        nodes, run_verdicts = gate(cluster, runs)
        passed = [n.node for n in nodes if n.passed]
        failed = [n.node for n in nodes if not n.passed]
        if json_out:
            data = {
                "ok": not failed,
                "nodes": [{"node": n.node, "su": n.su, "passed": n.passed, "busbw_gb_s": n.busbw, "hcas": n.hcas,
                           "problems": n.problems} for n in nodes],
                "runs": [{"source": v.run.source, "scope": v.scope, "test": v.test, "nodes": len(v.run.nodes),
                          "ranks": v.run.ranks, "busbw_gb_s": v.busbw_gb_s, "threshold_gb_s": v.threshold_gb_s,
                          "passed": v.passed, "problems": v.problems} for v in run_verdicts],
                "resume": resume_command(passed),
                "drain": drain_command(failed),
            }
            out.print_json(data=data)
        else:
            table = Table(title=f"{cluster.env}: nccl-tests gate (busbw GB/s at the largest message)")
            for col in ("node", "SU", *[t.removesuffix("_perf") for t in TESTS], "HCAs", "SU / partition", "result"):
                table.add_column(col, justify="right" if col in [t.removesuffix("_perf") for t in TESTS] else "left")
            for n in nodes:
                result = Text("pass", style="green") if n.passed else Text("FAIL: " + "; ".join(n.problems), style="red")
                table.add_row(n.node, n.su or "-", *[_bw(n.busbw.get(t)) for t in TESTS], n.hcas,
                              ", ".join(n.multi) or "-", result)
            out.print(table)
            multi = [v for v in run_verdicts if v.scope != "node"]
            if multi:
                runs_table = Table(title="multi-node runs")
                for col in ("scope", "target", "test", "nodes", "busbw", "min", "result"):
                    runs_table.add_column(col)
                for v in multi:
                    runs_table.add_row(v.scope, v.run.target or "-", v.test, str(len(v.run.nodes)), _bw(v.busbw_gb_s),
                                       _bw(v.threshold_gb_s),
                                       Text("pass", style="green") if v.passed else Text("; ".join(v.problems), style="red"))
                out.print(runs_table)
            out.print(f"{len(passed)} node(s) passed, {len(failed)} failed", highlight=False)
            if passed:
                out.print(f"resume the nodes that passed:\n  {resume_command(passed)}", highlight=False)
            if failed:
                err.print(f"keep the failed nodes out:\n  {drain_command(failed)}", highlight=False)
        if failed:
            raise typer.Exit(1)


    @fabric_app.command("import-cabling")
    def import_cabling(
        sheet: Annotated[Path, typer.Argument(help="the site's cabling CSV: columns host and su (others ignored)")],
        stack: Annotated[str | None, typer.Option("--stack", "-s", help="environment [default: $AIINFRA_STACK or dev]")] = None,
    ) -> None:
        """Print fabric.scalable_units from a cabling sheet, checked against the environment's GPU nodes.

        The block goes under fabric: in the blueprint; nodes whose SU changes are listed. Exit 1 when
        the sheet leaves GPU nodes out, names hosts that are not GPU nodes, or overfills an SU."""
        from ClusterShell.NodeSet import NodeSet

        from aiinfra.spec.cabling import read_cabling, scalable_units_yaml

        cluster = load(stack, None).cluster
        units = read_cabling(sheet)
        gpu_hosts = {h.name: h.su for h in cluster.hosts.values() if h.su is not None}
        listed = {h: su for su, hosts in units.items() for h in hosts}
        su_nodes = cluster.fabric.su_nodes if cluster.fabric else 0
        problems = []
        missing = [h for h in gpu_hosts if h not in listed]
        if missing:
            problems.append(f"GPU nodes not in the sheet: {NodeSet.fromlist(missing)}")
        gone = {h for h, st in cluster.blueprint.nodes.items() if st.state == "decommissioned"}
        gone = {h for expr in gone for h in NodeSet(expr)}
        unknown = [h for h in listed if h not in gpu_hosts and h not in gone]
        if unknown:
            problems.append(f"not GPU nodes of '{cluster.env}': {NodeSet.fromlist(unknown)}")
        problems += [f"SU {su} has {len(hosts)} nodes, more than su_nodes {su_nodes}"
                     for su, hosts in units.items() if su_nodes and len(hosts) > su_nodes]
        moved = {h: (gpu_hosts[h], su) for h, su in listed.items() if h in gpu_hosts and gpu_hosts[h] != su}
        sys.stdout.write(scalable_units_yaml(units))
        if moved:
            err.print(f"{len(moved)} node(s) change SU (their leaf labels, topology.conf and inventory follow):",
                      highlight=False)
            for h, (old, new) in list(moved.items())[:20]:
                err.print(f"  {h}: SU {old} -> SU {new}", highlight=False)
        for p in problems:
            err.print(f"{sheet}: {p}", style="red", highlight=False)
        if problems:
            raise typer.Exit(1)
