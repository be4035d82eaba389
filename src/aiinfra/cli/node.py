"""``aiinfra node drain|down|resume|replace|status HOST...``: nodes out of service and back, now.

Mounted by :func:`aiinfra.cli.app._mount_layers` through :func:`register`. The work is done by
:mod:`aiinfra.deploy.nodes` (Slurm through scontrol on the controller, Kubernetes through its
API); this module parses options, prints one row per host and, at the end, the change to commit
under the blueprint's ``nodes:`` (the persistent record: the next render and ``hosts up`` keep it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from aiinfra import paths
from aiinfra.cli.console import console

if TYPE_CHECKING:
    from aiinfra.pipeline import Built

out = console()
err = console(stderr=True)

HostsArg = Annotated[list[str], typer.Argument(help="hosts: names or hostlists, e.g. gpu017 gpu[001-004]",
                                               show_default=False)]
StackOpt = Annotated[str | None, typer.Option("--stack", "-s", help="environment [default: $AIINFRA_STACK or dev]")]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", "-r", help="why, as `sinfo -R` and the node's annotation show it (3-120 characters)")]
LocalOpt = Annotated[bool, typer.Option(
    "--local", help="run scontrol on this machine (on PATH, with a working slurm.conf) instead of on the controller")]
ExtraOpt = Annotated[list[str] | None, typer.Option(
    "--extra-vars", "-e", help="Ansible extra variables for the controller connection: @file.yml or k=v")]
InventoryOpt = Annotated[list[Path] | None, typer.Option(
    "--inventory", "-i", help="an extra inventory source beside the rendered one")]
KubeconfigOpt = Annotated[Path | None, typer.Option(
    "--kubeconfig", help="for kubernetes hosts [default: $KUBECONFIG, then ~/.kube/config]")]
EvictOpt = Annotated[float, typer.Option(
    "--evict-timeout", help="seconds to retry evictions a PodDisruptionBudget refuses", min=0)]

_STYLE = {"drain": "yellow", "drained": "yellow", "draining": "yellow", "down": "red", "fail": "red",
          "pass": "green", "skipped": "yellow", "in service": "green", "idle": "green"}


def _cell(text: str) -> Text:
    return Text(text, style=_STYLE.get(text.split(" ")[0], ""))


def _print_change(cluster, edits) -> None:
    if not edits:
        out.print(f"blueprint: {cluster.source} already records this under nodes: (nothing to commit)",
                  highlight=False)
        return
    out.print(f"blueprint change to commit ({cluster.source}, aiinfra:cluster.nodes), so the next render and "
              f"`hosts up` keep it:", highlight=False)
    for edit in edits:
        out.print(f"  {edit.line()}", markup=False, highlight=False)


def register(app: typer.Typer, load: Callable[[str | None, Path | None], Built]) -> None:
    node_app = typer.Typer(help="Take nodes out of service and back, now (Slurm and Kubernetes); the blueprint's "
                           "nodes: section is the record.", no_args_is_help=True)
    app.add_typer(node_app, name="node")

    def context(stack, hosts, local, extra_vars, inventory):
        from aiinfra.deploy.nodes import Controller, Remote, by_scheduler, resolve_hosts

        built = load(stack, None)
        cluster = built.cluster
        names = resolve_hosts(cluster, hosts)
        root = paths.project_root()
        controller = Controller(Remote(cluster, root, list(extra_vars or []), list(inventory or [])), local)
        return built, names, by_scheduler(cluster, names), controller

    def change_state(action: str, stack, hosts, reason, local, extra_vars, inventory, kubeconfig, evict_timeout):
        from aiinfra.deploy.nodes import (
            STATE_OF_ACTION,
            NodeState,
            blueprint_change,
            checked_reason,
            connect_kubernetes,
            slurm_set,
        )
        from aiinfra.errors import UsageError

        state = STATE_OF_ACTION[action]
        if state is not None:
            reason = checked_reason(state, reason)
        elif reason:
            raise UsageError(f"{action} takes no --reason (the node goes back to service)")
        built, names, split, controller = context(stack, hosts, local, extra_vars, inventory)
        cluster = built.cluster
        table = Table(title=f"{cluster.env}: node {action}" + (f" ({reason})" if reason else ""))
        for col in ("host", "scheduler", "now", "reason", "pods", "note"):
            table.add_column(col)
        failed = []
        if split["slurm"]:
            after = slurm_set(controller, split["slurm"], action, reason)
            where = "here" if controller.local else f"on {controller.host}"
            for h in split["slurm"]:
                n = after.get(h)
                note = f"scontrol {where}"
                if n is None:
                    failed.append(h)
                    note = "not in Slurm's node table"
                elif (n.out_of_service or None) != state and not (state == "drain" and n.out_of_service == "down"):
                    failed.append(h)
                    note = f"Slurm shows {n.state}, expected {action}"
                table.add_row(h, "slurm", _cell(n.shown if n else "?"), n.reason if n else "", "-", note)
        if split["kubernetes"]:
            kube = connect_kubernetes(kubeconfig)
            kube.evict_timeout_s = evict_timeout
            for h in split["kubernetes"]:
                done = kube.set_state(h, state, reason) if state else kube.resume(h)
                pods = "-"
                if state:
                    pods = f"{len(done.evicted)} evicted, {len(done.skipped)} left (DaemonSet/mirror)"
                    if done.refused:
                        pods += f", {len(done.refused)} refused by a PodDisruptionBudget"
                    if done.failed:
                        pods += f", {len(done.failed)} failed"
                now = f"{done.state or 'in service'}{' (cordoned)' if done.unschedulable else ''}"
                table.add_row(h, "kubernetes", _cell(now), done.reason, pods, "")
                for pod, why in {**done.refused, **done.failed}.items():
                    err.print(f"{h}: {pod}: not evicted: {why}", style="red", markup=False, highlight=False)
                if not done.ok:
                    failed.append(h)
        for h in split["none"]:
            table.add_row(h, "none", "-", "", "-", "no scheduler runs work on it: nothing to do now")
        out.print(table)
        _print_change(cluster, blueprint_change(
            cluster, {h: NodeState(state=state, reason=reason) if state else None for h in names}))
        if failed:
            from aiinfra.deploy.nodes import fold

            err.print(f"not done on {fold(failed)}", style="red", highlight=False)
            raise typer.Exit(1)

    @node_app.command("drain")
    def drain(hosts: HostsArg, reason: ReasonOpt = None, stack: StackOpt = None, local: LocalOpt = False,
              extra_vars: ExtraOpt = None, inventory: InventoryOpt = None, kubeconfig: KubeconfigOpt = None,
              evict_timeout: EvictOpt = 300) -> None:
        """No new work on HOSTS; running Slurm jobs finish; Kubernetes pods are evicted (PDBs respected)."""
        change_state("drain", stack, hosts, reason, local, extra_vars, inventory, kubeconfig, evict_timeout)

    @node_app.command("down")
    def down(hosts: HostsArg, reason: ReasonOpt = None, stack: StackOpt = None, local: LocalOpt = False,
             extra_vars: ExtraOpt = None, inventory: InventoryOpt = None, kubeconfig: KubeconfigOpt = None,
             evict_timeout: EvictOpt = 300) -> None:
        """HOSTS out now: Slurm stops their jobs (requeue-able ones run elsewhere); Kubernetes: NoExecute."""
        change_state("down", stack, hosts, reason, local, extra_vars, inventory, kubeconfig, evict_timeout)

    @node_app.command("resume")
    def resume(hosts: HostsArg, stack: StackOpt = None, local: LocalOpt = False, extra_vars: ExtraOpt = None,
               inventory: InventoryOpt = None, kubeconfig: KubeconfigOpt = None) -> None:
        """HOSTS back to service: Slurm RESUME; Kubernetes uncordon, taint and reason removed."""
        change_state("resume", stack, hosts, None, local, extra_vars, inventory, kubeconfig, 0)

    @node_app.command("status")
    def status(hosts: HostsArg, stack: StackOpt = None, local: LocalOpt = False, extra_vars: ExtraOpt = None,
               inventory: InventoryOpt = None, kubeconfig: KubeconfigOpt = None,
               json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
        """State and reason of HOSTS now, beside what the blueprint's nodes: says."""
        from aiinfra.deploy.nodes import connect_kubernetes, slurm_status
        from aiinfra.spec.cluster import node_states

        built, names, split, controller = context(stack, hosts, local, extra_vars, inventory)
        cluster = built.cluster
        recorded = node_states(cluster.blueprint)
        rows = []
        if split["slurm"]:
            shown = slurm_status(controller, split["slurm"])
            for h in split["slurm"]:
                n = shown.get(h)
                rows.append({"host": h, "scheduler": "slurm", "state": n.shown if n else "unknown",
                             "out_of_service": n.out_of_service if n else None, "detail": n.state if n else "",
                             "reason": n.reason if n else "",
                             "set_by": f"{n.reason_user} {n.reason_time}".strip() if n else ""})
        if split["kubernetes"]:
            kube = connect_kubernetes(kubeconfig)
            for h in split["kubernetes"]:
                k = kube.status(h)
                rows.append({"host": h, "scheduler": "kubernetes", "state": k.state or "in service",
                             "out_of_service": k.state, "detail": f"Ready={k.ready}"
                             + (", cordoned" if k.unschedulable else ""), "reason": k.reason, "set_by": ""})
        for h in split["none"]:
            rows.append({"host": h, "scheduler": "none", "state": "-", "out_of_service": None, "detail": "",
                         "reason": "", "set_by": ""})
        for row in rows:
            rec = recorded.get(row["host"])
            row["blueprint"] = rec.state if rec else "in service"
            row["blueprint_reason"] = rec.reason if rec else ""
        rows.sort(key=lambda r: names.index(r["host"]))
        if json_out:
            out.print_json(data={"env": cluster.env, "nodes": rows})
            return
        table = Table(title=f"{cluster.env}: nodes now")
        for col in ("host", "scheduler", "state", "detail", "reason", "set by", "blueprint"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["host"], r["scheduler"], _cell(r["state"]), r["detail"], r["reason"], r["set_by"],
                          r["blueprint"])
        out.print(table)
        differ = [r["host"] for r in rows if r["scheduler"] != "none"
                  and (r["out_of_service"] or "in service") != r["blueprint"]]
        if differ:
            from aiinfra.deploy.nodes import fold

            out.print(f"differs from {cluster.source} (nodes:): {fold(differ)}: commit the change the last "
                      f"`aiinfra node` printed, or run it again to match the blueprint", highlight=False)

    @node_app.command("replace")
    def replace(
        hosts: HostsArg, stack: StackOpt = None, local: LocalOpt = False, extra_vars: ExtraOpt = None,
        inventory: InventoryOpt = None,
        tags: Annotated[str | None, typer.Option("--tags", "-t", help="host roles to run [all of site.yml]")] = None,
        render: Annotated[bool, typer.Option("--render", help="render manifests/<env> first when stale")] = False,
        skip_gpu_tests: Annotated[bool, typer.Option(
            "--skip-gpu-tests", envvar="AIINFRA_SKIP_GPU_TESTS",
            help="no DCGM diagnostics and nccl-tests (no real GPUs, e.g. a test bed); the health check still runs")]
        = False,
    ) -> None:
        """After a hardware swap: host roles on HOSTS, then the acceptance gate (health check, DCGM
        diagnostics, per-node nccl-tests); RESUME only the nodes that pass, exit 1 if any fails."""
        from aiinfra.deploy.ansible import ensure_fresh
        from aiinfra.deploy.nodes import blueprint_change, fold, replace_nodes
        from aiinfra.errors import UsageError

        built, names, split, controller = context(stack, hosts, local, extra_vars, inventory)
        cluster = built.cluster
        others = split["kubernetes"] + split["none"]
        if others:
            raise UsageError(f"replace gates Slurm nodes (health check, nccl-tests job); {fold(others)} "
                             f"{'is' if len(others) == 1 else 'are'} not: run `aiinfra hosts up --limit "
                             f"{fold(others)}`, check, then `aiinfra node resume {fold(others)}`")
        note = ensure_fresh(cluster, built.plan, controller.remote.root, render)
        out.print(f"{cluster.env}: {note}", highlight=False)
        skip = None
        if skip_gpu_tests:
            skip = ("AIINFRA_SKIP_GPU_TESTS is set" if os.environ.get("AIINFRA_SKIP_GPU_TESTS")
                    else "--skip-gpu-tests given")

        def show_step(host, step) -> None:
            verdict = "skipped" if step.passed is None else ("pass" if step.passed else "FAIL")
            out.print(f"{host}: {step.name}: {verdict}: {step.detail}", markup=False, highlight=False)

        out.print(f"host roles on {fold(names)} (site.yml{' --tags ' + tags if tags else ''}) ...", highlight=False)
        site, done = replace_nodes(cluster, controller.remote.root, controller, names, tags=tags,
                                   skip_gpu_tests=skip, on_step=show_step)
        for message in (site.messages if site else [])[:20]:
            err.print(message, style="red", markup=False, highlight=False)
        table = Table(title=f"{cluster.env}: node replace")
        for col in ("host", "host roles", "gate", "now", "note"):
            table.add_column(col)
        for d in done:
            gate = "; ".join(f"{s.name}: {'skipped' if s.passed is None else 'pass' if s.passed else 'FAIL'}"
                             for s in d.steps) or "-"
            now = d.after.shown if d.after else "?"
            table.add_row(d.host, d.roles, gate, _cell(now),
                          "resumed" if d.resumed else f"kept {d.before.out_of_service}: {d.why}")
        out.print(table)
        passed = [d.host for d in done if d.resumed]
        failed = [d for d in done if not d.resumed]
        _print_change(cluster, blueprint_change(cluster, {h: None for h in passed}))
        if failed:
            for d in failed:
                err.print(f"{d.host}: not resumed: {d.why}", style="red", markup=False, highlight=False)
            raise typer.Exit(1)
