"""``aiinfra fabric``: ``check``, the nccl-tests gate before nodes join a partition (:mod:`aiinfra.deploy.acceptance`);
``draw`` and ``cabling``, the fabric model as a picture and as a cabling plan (:mod:`aiinfra.render.fabric_draw`,
:mod:`aiinfra.render.cabling`); ``import-cabling``, a site's sheet back into the blueprint.

Mounted through :func:`register` when a ``fabric`` command runs (:data:`aiinfra.cli.app.LAYERS`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from aiinfra.cli.console import console
from aiinfra.errors import UsageError

if TYPE_CHECKING:
    from aiinfra.pipeline import Built

out = console()
err = console(stderr=True)


def _bw(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _print_summary(env: str, nodes: list, run_verdicts: list) -> None:
    """One row per SU, then only what failed (folded per SU and reason): a few lines for 512 nodes."""
    from aiinfra.deploy.acceptance import by_su, failures
    from aiinfra.plan.acceptance import TESTS

    tests = [t.removesuffix("_perf") for t in TESTS]
    table = Table(title=f"{env}: nccl-tests gate per SU", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                  title_justify="left", caption_justify="left",
                  caption="busbw GB/s at the largest message: the SU's slowest node\n"
                          "SU runs: runs over the SU's nodes that passed / all")
    for col in ("SU", "nodes", "pass", "fail", *tests, "SU runs"):
        table.add_column(col, justify="left" if col == "SU" else "right")
    for s in by_su(nodes, run_verdicts):
        runs_ok = sum(v.passed for v in s.runs)
        table.add_row(s.su, str(len(s.nodes)), str(s.passed), Text(str(s.failed), style="red" if s.failed else ""),
                      *[_bw(s.worst(t)) for t in TESTS], f"{runs_ok}/{len(s.runs)}" if s.runs else "-")
    out.print(table)
    wide = [v for v in run_verdicts if v.scope == "partition"]
    if wide:
        out.print("runs across SUs:", highlight=False)
        for v in wide:
            verdict = "pass" if v.passed else "FAIL: " + "; ".join(v.problems)
            out.print(f"  {v.run.target or v.scope} {v.test}, {len(v.run.nodes)} nodes: busbw {_bw(v.busbw_gb_s)}"
                      f" (min {_bw(v.threshold_gb_s)}) {verdict}", highlight=False)
    failed = failures(nodes)
    if failed:
        out.print("failed:", style="red", highlight=False)
        for hosts, su, why in failed:
            out.print(f"  {hosts} ({su}): {why}", highlight=False)


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    err.print(f"wrote {path}", highlight=False)


def register(app: typer.Typer, load: Callable[[str | None, Path | None], Built]) -> None:
    fabric_app = typer.Typer(help="The fabric: its picture and cabling plan, the nccl-tests acceptance gate.",
                             no_args_is_help=True)
    app.add_typer(fabric_app, name="fabric")

    @fabric_app.command("check")
    def check(
        results: Annotated[list[Path], typer.Argument(help="nccl-tests output files or folders of them")],
        stack: Annotated[str | None, typer.Option("--stack", "-s", help="environment [default: $AIINFRA_STACK or dev]")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ) -> None:
        """Pass/fail per node from nccl-tests output; exit 1 when a node fails. Prints the resume command."""
        from aiinfra.deploy.acceptance import drain_command, gate, read_results, resume_command

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
            _print_summary(cluster.env, nodes, run_verdicts)
            out.print(f"{len(passed)} node(s) passed, {len(failed)} failed", highlight=False)
            if passed:
                out.print(f"resume the nodes that passed:\n  {resume_command(passed)}", highlight=False)
            if failed:
                err.print(f"keep the failed nodes out:\n  {drain_command(failed)}", highlight=False)
        if failed:
            raise typer.Exit(1)


    @fabric_app.command("draw")
    def draw(
        stack: Annotated[str | None, typer.Option("--stack", "-s", help="environment [default: $AIINFRA_STACK or dev]")] = None,
        out_file: Annotated[Path | None, typer.Option("--out", "-o", help="FILE.svg or FILE.png (default: SVG on stdout)")] = None,
        results: Annotated[list[Path] | None, typer.Option(
            "--results", help="nccl-tests outputs (files or folders): mark the nodes that fail the gate")] = None,
    ) -> None:
        """The fabric as a picture: SUs, leaves per rail, spine groups, node counts, nodes out or failed.

        SVG (deterministic bytes), or PNG for reports when matplotlib is installed (the png extra)."""
        from aiinfra.render.fabric_draw import picture, to_png, to_svg

        suffix = out_file.suffix.lower() if out_file else ".svg"
        if suffix not in (".svg", ".png"):
            raise UsageError(f"--out {out_file}: write .svg or .png")
        cluster = load(stack, None).cluster
        failed: dict[str, str] = {}
        if results:
            from aiinfra.deploy.acceptance import gate, read_results

            missing = [str(p) for p in results if not p.exists()]
            if missing:
                raise UsageError(f"no such file or folder: {', '.join(missing)}")
            nodes, _ = gate(cluster, read_results(results))
            failed = {n.node: "; ".join(n.problems) for n in nodes if not n.passed}
        pic = picture(cluster, failed)
        if suffix == ".png":
            try:
                data = to_png(pic)
            except ImportError:
                raise UsageError("a PNG needs matplotlib: pip install matplotlib (or write FILE.svg)") from None
            _write(out_file, data)
        elif out_file:
            _write(out_file, to_svg(pic).encode())
        else:
            sys.stdout.write(to_svg(pic))

    @fabric_app.command("cabling")
    def cabling(
        stack: Annotated[str | None, typer.Option("--stack", "-s", help="environment [default: $AIINFRA_STACK or dev]")] = None,
        out_file: Annotated[Path | None, typer.Option("--out", "-o", help="FILE.csv (default: stdout)")] = None,
    ) -> None:
        """The cabling plan as CSV: each node HCA to its leaf port, each leaf uplink to its spine port.

        Port numbering: docs/operations.md. `aiinfra fabric import-cabling` reads it back (host, su)."""
        from aiinfra.render.cabling import cabling_csv

        text = cabling_csv(load(stack, None).cluster)
        if out_file:
            _write(out_file, text.encode())
        else:
            sys.stdout.write(text)

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
