"""``aiinfra hosts up``: configure the hosts of an environment with Ansible (playbooks/site.yml).

Mounted by :func:`aiinfra.cli._mount_optional` through :func:`register`. The work is done by
:mod:`aiinfra.deploy.ansible`; this module parses options and shows progress and results.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from aiinfra import paths
from aiinfra.cli.console import console, interactive

if TYPE_CHECKING:
    from aiinfra.pipeline import Built

out = console()
err = console(stderr=True)

_STYLE = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red"}


def status_counts(hosts: dict) -> dict[str, int]:
    """Hosts per status, as the table's status column shows them (the summary line says the same)."""
    return {k: sum(1 for s in hosts.values() if s.status == k) for k in _STYLE}


def _totals_line(progress) -> Text:
    line = Text(f"{progress.play} | {progress.task}\n", style="bold")
    for k, n in status_counts(progress.hosts).items():
        line.append(f"{k} {n}  ", style=_STYLE[k])
    line.append(f"({len(progress.hosts)} hosts seen)")
    return line


def _progress_line(progress) -> str:
    """One plain line per task when the output is not a terminal (a CI log, a pipe)."""
    counts = ", ".join(f"{n} {k}" for k, n in status_counts(progress.hosts).items())
    return f"{progress.play} | {progress.task} (hosts so far: {counts})"


def summary_line(result) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in status_counts(result.hosts).items())
    return (f"{len(result.hosts)} host(s): {counts}; {result.changed} change(s), {result.elapsed_s:.1f} s; "
            f"artifacts: {result.private_data_dir}")


def host_table(hosts: dict, title: str = "hosts") -> Table:
    table = Table(title=title)
    for col in ("host", "status", "ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(col, justify="left" if col in ("host", "status") else "right")
    for name in sorted(hosts):
        s = hosts[name]
        table.add_row(name, Text(s.status, style=_STYLE[s.status]), str(s.ok), str(s.changed), str(s.failed),
                      str(s.unreachable), str(s.skipped))
    return table


def register(app: typer.Typer, load: Callable[[str | None, Path | None], Built]) -> None:
    hosts_app = typer.Typer(help="Configure hosts with Ansible from the rendered inventory.", no_args_is_help=True)
    app.add_typer(hosts_app, name="hosts")

    @hosts_app.command("up")
    def up(
        stack: Annotated[str | None, typer.Option("--stack", "-s", help="environment [default: $AIINFRA_STACK or dev]")] = None,
        limit: Annotated[str | None, typer.Option("--limit", "-l", help="hosts or groups: a hostlist (gpu[001-032]) or an Ansible pattern (su01:!node_drain)")] = None,
        tags: Annotated[str | None, typer.Option("--tags", "-t", help="roles to run, e.g. munge,slurm")] = None,
        check: Annotated[bool, typer.Option("--check", help="dry run: report what would change")] = False,
        render: Annotated[bool, typer.Option("--render", help="render manifests/<env> first when stale")] = False,
        extra_vars: Annotated[list[str] | None, typer.Option(
            "--extra-vars", "-e", help="extra variables: @file.yml (secrets, connection settings) or k=v")] = None,
        inventory: Annotated[list[Path] | None, typer.Option(
            "--inventory", "-i", help="an extra inventory source beside the rendered one")] = None,
        forks: Annotated[int | None, typer.Option("--forks", help="hosts in parallel [ansible.cfg]")] = None,
        mitogen: Annotated[bool, typer.Option(
            "--mitogen", help="run under Mitogen's strategy (pip install 'aiinfra[mitogen]'): several times faster")] = False,
    ) -> None:
        """Run playbooks/site.yml over manifests/<env>/ansible/inventory.json; exit 1 if a host failed."""
        from aiinfra.deploy.ansible import ensure_fresh, mitogen_env, run_site
        from aiinfra.render.templates import fold

        loaded = load(stack, None)
        cluster = loaded.cluster
        root = paths.project_root()
        envvars = mitogen_env() if mitogen else None
        note = ensure_fresh(cluster, loaded.plan, root, render)
        out.print(f"{cluster.env}: {note}", highlight=False)

        live = Live(Text("starting ansible-runner ..."), console=out, refresh_per_second=4, transient=True)
        last_task = None

        def show(progress) -> None:
            nonlocal last_task
            if live.is_started:
                live.update(Group(_totals_line(progress)))
            elif progress.task and (progress.play, progress.task) != last_task:
                last_task = (progress.play, progress.task)
                out.print(_progress_line(progress), markup=False, highlight=False)

        if interactive(out):
            live.start()
        try:
            result = run_site(cluster, root, limit=limit, tags=tags, check=check, extra_vars=extra_vars or [],
                              inventories=inventory or [], forks=forks, on_event=show, envvars=envvars)
        finally:
            live.stop()
        out.print(host_table(result.hosts, title=f"{cluster.env}: site.yml{' (check)' if check else ''}"))
        if check:  # what a real run would change, with the diffs --diff gives
            for change in result.changes:
                out.print(f"would change: {change}", markup=False, highlight=False)
        for message in result.messages[:20]:
            err.print(message, style="red", markup=False, highlight=False)
        out.print(summary_line(result), markup=False, highlight=False)
        if not result.ok:
            if result.failed_hosts:
                why = f"failed or unreachable: {fold(result.failed_hosts)}"
            else:
                why = "ansible-playbook stopped before reaching a host (its last lines are above)"
            err.print(f"ansible-runner: {result.status} (rc {result.rc}); {why}", style="red", highlight=False)
            raise typer.Exit(1)
