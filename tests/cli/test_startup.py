"""Start-up: a command imports only what it needs. ``aiinfra --help`` loads no stage of the pipeline;
``validate`` loads no renderer or executor; a layer's commands load their own module only.

Each case runs the console script's ``main()`` in a fresh interpreter (this test process has
imported everything already) and reads the modules it left loaded. Timing is not asserted here:
benchmarks/bench_startup.py measures it (docs/benchmarks.md, "CLI start-up").
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from aiinfra.cli.app import LAYERS, app
from aiinfra.cli.lazy import layered
from conftest import ROOT

#: what runs ``aiinfra ARGS`` in-process, then writes the names in sys.modules to a file
CHILD = """
import json, sys
out, args = sys.argv[1], json.loads(sys.argv[2])
sys.argv = ["aiinfra", *args]
from aiinfra.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""

RENDER_AND_EXECUTORS = ("aiinfra.render", "aiinfra.deploy", "jinja2", "pulumi", "kubernetes", "ansible_runner")
STAGES = ("aiinfra.pipeline", "aiinfra.spec", "aiinfra.plan", "aiinfra.checks")
LAYER_MODULES = sorted({module for _, module, _ in LAYERS})


def run(tmp_path, *args: str, env: dict[str, str] | None = None) -> tuple[int, set[str], str]:
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", CHILD, str(out), json.dumps(args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert out.exists(), done.stderr
    data = json.loads(out.read_text())
    return data["code"], set(data["modules"]), done.stdout


def loaded(modules: set[str], prefixes: tuple[str, ...] | list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_help_loads_no_stage_and_no_layer(tmp_path):
    code, modules, stdout = run(tmp_path, "--help")
    assert code == 0
    assert all(f"  {name} " in stdout for name, _, _ in LAYERS)  # the layer commands are listed all the same
    assert loaded(modules, RENDER_AND_EXECUTORS + STAGES + ("pydantic", "yaml", *LAYER_MODULES)) == []


def test_validate_loads_the_pipeline_but_no_renderer_or_executor(tmp_path):
    code, modules, stdout = run(tmp_path, "validate", "--stack", "dev")
    assert code == 0 and "stacks/Pulumi.dev.yaml: ok" in stdout
    assert {"aiinfra.pipeline", "aiinfra.spec.models", "aiinfra.plan.cluster"} <= modules
    assert loaded(modules, RENDER_AND_EXECUTORS + tuple(LAYER_MODULES)) == []


@pytest.mark.parametrize("args,module", [(("size", "train", "--help"), "aiinfra.cli.plan"),
                                         (("fabric", "--help"), "aiinfra.cli.fabric"),
                                         (("hosts", "up", "--help"), "aiinfra.cli.hosts")])
def test_a_layer_command_loads_its_own_layer_only(tmp_path, args, module):
    code, modules, stdout = run(tmp_path, *args)
    assert code == 0 and stdout.startswith(f"Usage: aiinfra {' '.join(args[:-1])} ")
    assert loaded(modules, LAYER_MODULES) == [module]
    assert loaded(modules, ("aiinfra.render", "aiinfra.deploy", "jinja2", "pulumi", "kubernetes")) == []


def test_completing_a_command_name_loads_no_layer(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "_AIINFRA_COMPLETE": "complete_bash", "COMP_WORDS": "aiinfra ",
           "COMP_CWORD": "1"}
    code, modules, stdout = run(tmp_path, env=env)
    assert code == 0
    assert stdout.split() == ["validate", "show", "schema", "render", "inventory", *(n for n, _, _ in LAYERS)]
    assert loaded(modules, RENDER_AND_EXECUTORS + STAGES + tuple(LAYER_MODULES)) == []


def test_completing_a_layer_commands_options_loads_it(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "_AIINFRA_COMPLETE": "complete_bash", "COMP_WORDS": "aiinfra size train --mo",
           "COMP_CWORD": "3"}
    code, modules, stdout = run(tmp_path, env=env)
    assert code == 0 and stdout.split() == ["--model"]
    assert loaded(modules, LAYER_MODULES) == ["aiinfra.cli.plan"]


# ------------------------------------------------------------------ the layer table


def _fresh_root():
    group = typer.main.get_command(app)
    return group, {w: group.context_class(group, info_name="aiinfra", terminal_width=w) for w in (60, 80, 250)}


def test_the_root_help_is_the_same_before_and_after_the_layers_load():
    group, contexts = _fresh_root()
    before = {w: group.get_help(ctx) for w, ctx in contexts.items()}
    commands = dict(group.commands)  # walking the mapping imports every layer
    assert all(type(commands[name]).__name__ in ("TyperCommand", "TyperGroup") for name, _, _ in LAYERS)
    assert {w: group.get_help(ctx) for w, ctx in contexts.items()} == before


def test_each_summary_is_the_first_paragraph_of_its_commands_help():
    for name, _, summary in LAYERS:
        group, _ = _fresh_root()  # a layer mounts all its commands at once (plan: plan and size)
        listed = group.get_command(None, name)  # the stand-in, while the layer is not loaded
        real = group.commands[name]
        assert real is not listed and group.get_command(None, name) is real
        assert summary == " ".join(real.help.split("\n\n")[0].split()), name
        for limit in range(20, 200, 9):
            assert listed.get_short_help_str(limit) == real.get_short_help_str(limit), (name, limit)


def test_every_command_a_layer_mounts_is_in_the_table():
    from aiinfra.cli.app import mount

    for module in LAYER_MODULES:
        named = {name for name, m, _ in LAYERS if m == module}
        assert set(mount(module)) == named, module


def test_a_layer_loads_once_and_runs_a_command_the_table_lacks():
    mounted = []

    def mount(module):
        mounted.append(module)
        layer = typer.Typer()
        layer.command("listed")(lambda: typer.echo("listed ran"))
        layer.command("unlisted")(lambda: typer.echo("unlisted ran"))
        return dict(typer.main.get_group(layer).commands)

    root = typer.Typer(cls=layered((("listed", "a.layer", "The listed one."),), mount), rich_markup_mode=None)
    root.callback()(lambda: None)
    runner = CliRunner()
    r = runner.invoke(root, ["--help"])
    assert r.exit_code == 0 and "listed  The listed one." in r.output and mounted == []
    r = runner.invoke(root, ["unlisted"])
    assert r.exit_code == 0 and r.output == "unlisted ran\n" and mounted == ["a.layer"]
    r = runner.invoke(root, ["nothing"])
    assert r.exit_code == 2 and "No such command 'nothing'" in r.output


def test_an_unknown_command_still_gets_a_suggestion(aiinfra):
    r = aiinfra("hots")
    assert r.code == 2 and "No such command 'hots'" in r.stderr and "'hosts'" in r.stderr
