"""``aiinfra``: validate | show | schema | plan | size | render | inventory.

Exit codes: 0 ok; 1 invalid blueprint, failed check or stale manifests; 2 usage; 70 internal error
(a defect of aiinfra, never of the input: a short report file is written and its path printed).
A user mistake never ends in a traceback: it is printed as ``file:line: key.path: error[id]: ...``.
The stack defaults to ``$AIINFRA_STACK``, else ``dev``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aiinfra import paths
from aiinfra.cli.console import console
from aiinfra.cli.lazy import layered
from aiinfra.errors import AiinfraError, BlueprintError, Level, Problem, UsageError

if TYPE_CHECKING:
    from typer import _click

    from aiinfra.pipeline import Built

#: The commands each layer mounts from a module of its own with ``register(app, load)``, imported
#: on first use (:mod:`aiinfra.cli.lazy`): what ``aiinfra --help`` lists, in its order, with each
#: command's summary (the first paragraph of its help; tests/cli/test_startup.py compares them).
LAYERS = (
    ("plan", "aiinfra.cli.plan",
     "Capacity plan of every training job and serving deployment, reliability, power and failures."),
    ("init", "aiinfra.cli.init",
     "Scaffold a site's configuration repository: blueprint, manifests, Pulumi project, CI, README."),
    ("artifacts", "aiinfra.cli.artifacts",
     "Images, charts, git sources, OS packages and models the stack needs, and their mirror."),
    ("size", "aiinfra.cli.plan", "Size one training job or serving deployment from flags (no blueprint needed)."),
    ("hosts", "aiinfra.cli.hosts", "Configure hosts with Ansible from the rendered inventory."),
    ("fabric", "aiinfra.cli.fabric", "The fabric: its picture and cabling plan, the nccl-tests acceptance gate."),
    ("node", "aiinfra.cli.node", "Take nodes out of service and back, now (Slurm and Kubernetes); the "
                                 "blueprint's nodes: section is the record."),
)
#: How every command prints its help, the root's and each layer's alike.
SETTINGS = {
    "pretty_exceptions_enable": False,
    # Plain (click) help for every command, sub-apps included: it wraps at $COLUMNS without cutting
    # option names, prints "[default: ...]" and "[png]" as written (rich markup would eat them) and
    # never colours a pipe.
    "rich_markup_mode": None,
}


def mount(module: str) -> dict[str, _click.Command]:
    """The commands a layer module mounts, made as the root makes its own."""
    layer = typer.Typer(add_completion=False, **SETTINGS)
    importlib.import_module(module).register(layer, load)
    return dict(typer.main.get_group(layer).commands)


app = typer.Typer(
    name="aiinfra",
    help="One blueprint per environment -> validated spec -> plan -> rendered Slurm, Kubernetes, Ansible.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    cls=layered(LAYERS, mount),
    **SETTINGS,
)
out = console()
err = console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"aiinfra {version('aiinfra')}", highlight=False)
        except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
            out.print("aiinfra (not installed: run from a checkout)", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print aiinfra's version and exit")] = False,
) -> None:
    """One blueprint per environment -> validated spec -> plan -> rendered Slurm, Kubernetes, Ansible."""

StackOpt = Annotated[
    str | None,
    typer.Option("--stack", "-s", help="environment: reads stacks/Pulumi.<ENV>.yaml [default: $AIINFRA_STACK or dev]"),
]
FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help="a blueprint file instead of --stack")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def default_stack() -> str:
    return os.environ.get("AIINFRA_STACK") or "dev"


def resolve(stack: str | None, file: Path | None) -> tuple[Path, str]:
    """The blueprint path and how to show it in messages."""
    if stack and file:
        raise UsageError("give --stack or --file, not both")
    if file is not None:
        return file, str(file)
    root = paths.project_root()
    env = stack or default_stack()
    path = paths.stack_file(env, root)
    if not path.is_file():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in (root / "stacks").glob("Pulumi.*.yaml"))
        from aiinfra.catalog.names import suggest

        raise UsageError(f"no stack '{env}': {path} does not exist{suggest(env, known)}; "
                         f"stacks here: {', '.join(known) or 'none'}")
    # Shown relative to the project root, whatever the working directory: the name lands in
    # rendered headers, which must be the same bytes wherever `aiinfra render` runs.
    return path, str(path.relative_to(root))


def build_file(path: Path, display: str) -> Built:
    """:func:`aiinfra.pipeline.build_file`: the pipeline (spec, planner, checks) is imported by the
    commands that read a blueprint, not by ``aiinfra --help``."""
    from aiinfra.pipeline import build_file as build

    return build(path, display)


def load(stack: str | None, file: Path | None) -> Built:
    """The environment through the pipeline: Cluster, Plan and warnings, or a BlueprintError."""
    path, shown = resolve(stack, file)
    return build_file(path, shown)


def print_problems(file: str, problems: list[Problem]) -> None:
    for p in problems:
        style = "red" if p.level is Level.ERROR else "yellow"
        err.print(p.format(file), style=style, markup=False, highlight=False)


# ------------------------------------------------------------------ validate / show / schema


@app.command()
def validate(stack: StackOpt = None, file: FileOpt = None, json_out: JsonOpt = False) -> None:
    """Check a blueprint: types, units, references, networks, fabric, versions, workload preflight."""
    path, shown = resolve(stack, file)
    try:
        loaded = build_file(path, shown)
    except BlueprintError as exc:
        if json_out:
            out.print_json(data={"ok": False, "file": shown, "problems": [p.to_dict(shown) for p in exc.problems]})
            raise typer.Exit(1) from None
        raise
    if json_out:
        out.print_json(data={"ok": True, "file": shown, "problems": [p.to_dict(shown) for p in loaded.warnings]})
        return
    print_problems(shown, loaded.warnings)
    t = loaded.cluster.totals
    out.print(f"{shown}: ok: {t['nodes']} nodes, {t['gpus']} GPUs"
              + (f", {len(loaded.warnings)} warning(s)" if loaded.warnings else ""), highlight=False)


@app.command()
def show(stack: StackOpt = None, file: FileOpt = None, json_out: JsonOpt = False) -> None:
    """What the environment is: nodes, GPUs, HBM, fabric, storage, schedulers, pinned versions."""
    from rich.table import Table

    from aiinfra.render.summary import summary
    from aiinfra.spec.units import format_bytes

    loaded = load(stack, file)
    data = summary(loaded.cluster)
    if json_out:
        out.print_json(data=data)
        return
    t = data["totals"]
    head = Table(title=f"{data['name']} ({data['env']})", show_header=False)
    for k, v in (
        ("nodes", t["nodes"]), ("GPU nodes", t["gpu_nodes"]), ("GPUs", t["gpus"]),
        ("HBM", f"{format_bytes(t['hbm_bytes'])} ({t['hbm_bytes'] / 1e12:.1f} TB)"),
        ("peak BF16 dense", f"{t['peak_bf16_dense_pflops']:.1f} PFLOP/s"),
        ("peak FP8 dense", f"{t['peak_fp8_dense_pflops']:.1f} PFLOP/s"),
        ("GPU TDP", f"{t['gpu_tdp_kw']:.1f} kW"), ("CPU cores", t["cpu_cores"]),
        ("RAM", format_bytes(t["memory_bytes"])),
    ):
        head.add_row(k, str(v))
    out.print(head)
    groups = Table(title="node groups")
    for col in ("group", "hosts", "nodes", "type", "scheduler", "GPUs", "roles"):
        groups.add_column(col)
    for g in data["node_groups"]:
        groups.add_row(g["name"], g["hosts"], str(g["nodes"]), g["node_type"], g["scheduler"],
                       f"{g['gpus']} x {g['gpu_model']}" if g["gpus"] else "-", ", ".join(g["roles"]))
    out.print(groups)
    if "fabric" in data:
        f = data["fabric"]
        fab = Table(title=f"fabric: {f['topology']}, {f['rate']}", show_header=False)
        for k, v in (("rails", f["rails"]), ("scalable units", f"{f['su_count']} x {f['su_nodes']} nodes"),
                     ("leaf switches", f["leaf_switches"]),
                     ("spine switches", f"{f['spine_switches']} in {f['spine_groups']} group(s)"),
                     ("injection per node", f"{f['node_injection_gbps']} Gb/s")):
            fab.add_row(k, str(v))
        out.print(fab)
    if data["storage"]:
        st = Table(title="storage", show_header=False)
        if "lustre" in data["storage"]:
            lu = data["storage"]["lustre"]
            st.add_row("lustre", f"{lu['fsname']} at {lu['mountpoint']}: {format_bytes(lu['capacity_bytes'], False)}, "
                                 f"{lu['bandwidth_bytes_per_s'] / 1e9:.0f} GB/s over {lu['lnet']}")
        if "gpfs" in data["storage"]:
            gp = data["storage"]["gpfs"]
            st.add_row("gpfs", f"{gp['fsname']} at {gp['mountpoint']}: {format_bytes(gp['capacity_bytes'], False)}, "
                               f"{gp['bandwidth_bytes_per_s'] / 1e9:.0f} GB/s, cluster {gp['cluster_name']}")
        if "nvmeof" in data["storage"]:
            nv = data["storage"]["nvmeof"]
            st.add_row("nvme-of", f"{nv['targets']} target(s) over {nv['transport']}")
        out.print(st)
    sched = Table(title="schedulers")
    for col in ("scheduler", "nodes", "GPUs"):
        sched.add_column(col)
    for name, s in data["schedulers"].items():
        sched.add_row(name, str(s["nodes"]), str(s["gpus"]))
    out.print(sched)
    # the pins: software versions, then one table per kind (charts, images, exporters)
    pins = data.get("versions", {})
    tables = {"versions": {k: v for k, v in pins.items() if not isinstance(v, dict)}}
    tables |= {f"versions.{k}": v for k, v in pins.items() if isinstance(v, dict) and v}
    for title, rows in tables.items():
        if rows:
            pinned = Table(title=title, show_header=False)
            for k, v in rows.items():
                pinned.add_row(k, str(v))
            out.print(pinned)


@app.command()
def schema(
    markdown: Annotated[bool, typer.Option("--markdown", help="the reference page (docs/blueprint.md)")] = False,
) -> None:
    """The blueprint's JSON Schema (for yaml-language-server and other editors)."""
    from aiinfra.spec.schema import blueprint_schema

    if markdown:
        from aiinfra.spec.reference import blueprint_reference

        sys.stdout.write(blueprint_reference())
        return
    sys.stdout.write(json.dumps(blueprint_schema(), indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------ render


@app.command()
def render(
    stack: StackOpt = None,
    check: Annotated[bool, typer.Option("--check", help="write nothing; exit 1 if manifests/<env> is stale")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="overwrite files edited by hand and delete files the last render did not write")] = False,
) -> None:
    """Render manifests/<env>/ (the GitOps tree) from the blueprint, atomically.

    Refuses to overwrite a hand edit or delete an untracked file in manifests/<env>/ unless --force
    (the tree's render record, .aiinfra-render.sha256, says what the last render wrote).
    """
    from aiinfra.render import render_all
    from aiinfra.render.writer import diff_tree, write_tree

    if check and force:
        raise UsageError("--check writes nothing; give --force only to a render that writes")
    loaded = load(stack, None)
    cluster = loaded.cluster
    artifacts = render_all(cluster, loaded.plan)
    target = paths.manifests_dir(cluster.env)
    if check:
        d = diff_tree(target, artifacts)
        if d.clean:
            out.print(f"manifests/{cluster.env}: up to date ({len(artifacts)} files)", highlight=False)
            return
        err.print(f"manifests/{cluster.env} differs from a fresh render: {len(d.changed)} changed, "
                  f"{len(d.added)} missing, {len(d.removed)} stale", style="red", highlight=False)
        for label, items in (("changed", d.changed), ("missing", d.added), ("stale", d.removed)):
            for p in items[:20]:
                err.print(f"  {label}: {p}", highlight=False)
            if len(items) > 20:
                err.print(f"  ... and {len(items) - 20} more {label}", highlight=False)
        err.print(f"run: aiinfra render --stack {cluster.env}", highlight=False)
        raise typer.Exit(1)
    written = write_tree(target, artifacts, force=force)
    for label, items in (("edited", written.overwritten.edited), ("untracked", written.overwritten.untracked)):
        for p in items:
            err.print(f"  --force: replaced or removed {label} file {p}", style="yellow", highlight=False)
    out.print(f"manifests/{cluster.env}: wrote {len(artifacts)} files", highlight=False)


# ------------------------------------------------------------------ inventory


@app.command()
def inventory(
    stack: StackOpt = None,
    list_: Annotated[bool, typer.Option("--list", help="all groups and host variables (JSON)")] = False,
    host: Annotated[str | None, typer.Option("--host", help="one host's variables (JSON)")] = None,
) -> None:
    """Ansible dynamic inventory from the blueprint (`ansible-inventory -i playbooks/inventory.sh`)."""
    from aiinfra.render.host_vars import all_group_vars
    from aiinfra.render.inventory import dynamic_host, dynamic_list, inventory_model

    if list_ == (host is not None):
        raise UsageError("give exactly one of --list or --host NAME")
    cluster = load(stack, None).cluster
    model = inventory_model(cluster)
    if list_:  # with the variables the static inventory has beside it in group_vars/all
        sys.stdout.write(json.dumps(dynamic_list(model, all_group_vars(cluster)), sort_keys=True) + "\n")
        return
    if host not in model.hostvars:
        from aiinfra.catalog.names import suggest

        raise UsageError(f"no host '{host}' in this environment{suggest(host, list(model.hostvars))}")
    sys.stdout.write(json.dumps(dynamic_host(model, host), sort_keys=True) + "\n")


INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): CI can tell a crash from a refusal (1) or bad usage (2)


def main() -> None:
    try:
        code = app(standalone_mode=False)  # typer.Exit inside a command comes back as the return value
        sys.exit(code if isinstance(code, int) else 0)
    except AiinfraError as exc:
        if isinstance(exc, BlueprintError):
            print_problems(exc.file, exc.problems)
            n = sum(1 for p in exc.problems if p.level is Level.ERROR)
            err.print(f"{exc.file}: {n} error(s)", style="red", highlight=False)
        else:
            err.print(f"error: {exc}", style="red", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:
        # usage errors of the option parser arrive here in non-standalone mode
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        report = crash_report(exc)
        err.print(f"internal error: {type(exc).__name__} (a defect of aiinfra, not of your input); "
                  f"report: {report}", style="red", highlight=False)
        sys.exit(INTERNAL_ERROR)


def crash_report(exc: BaseException) -> str:
    """Write the traceback to a private report file (never to the terminal or CI logs) and return its path.

    The command line is kept with the values of options that may carry secrets replaced."""
    import datetime
    import tempfile
    import traceback

    from aiinfra import __version__

    argv, hide = [], False
    for arg in sys.argv[1:]:
        argv.append("<hidden>" if hide else arg)
        hide = arg in ("-e", "--extra-vars")
    text = (f"aiinfra {__version__} internal error, {datetime.datetime.now(datetime.UTC).isoformat()}\n"
            f"command: aiinfra {' '.join(argv)}\n\n" + "".join(traceback.format_exception(exc)))
    folder = Path(os.environ.get("AIINFRA_REPORT_DIR") or tempfile.gettempdir())
    try:
        fd, name = tempfile.mkstemp(prefix="aiinfra-crash-", suffix=".txt", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return name
    except OSError as write_error:
        return f"(could not be written to {folder}: {write_error.strerror})"


if __name__ == "__main__":
    main()
