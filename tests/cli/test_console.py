"""Every CLI module prints through aiinfra.cli.console: no emoji codes, no cut lines."""

from __future__ import annotations

import ast

from aiinfra.cli.console import console
from conftest import ROOT


def test_a_line_number_of_100_is_not_an_emoji(capsys):
    console().print("stacks/Pulumi.prod.yaml:100: aiinfra:cluster.x: error[bad]: y " + "z" * 200)
    out = capsys.readouterr().out
    assert "Pulumi.prod.yaml:100: aiinfra" in out and "\U0001f4af" not in out
    assert out.count("\n") == 1  # soft wrap: one line, however wide


def test_no_cli_module_makes_its_own_console():
    for path in sorted((ROOT / "src" / "aiinfra" / "cli").glob("*.py")):
        if path.name == "console.py":
            continue
        calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", getattr(n.func, "attr", None)) == "Console"]
        assert not calls, f"{path.name}: use aiinfra.cli.console.console()"


def test_version_is_the_installed_distributions(aiinfra):
    from importlib.metadata import version

    r = aiinfra("--version")
    assert r.code == 0 and r.stdout.strip() == f"aiinfra {version('aiinfra')}"


def test_completion_can_be_shown(aiinfra):
    r = aiinfra("--help")
    assert r.code == 0 and "--install-completion" in r.stdout and "--show-completion" in r.stdout
