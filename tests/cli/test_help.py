"""Every command's --help fits 80 columns, names every option whole and prints bracketed texts as written."""

from __future__ import annotations

import re

import pytest
import typer.main

from aiinfra.cli.app import app


def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_every_layer_is_walked():
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"validate", "hosts up", "fabric check", "size train", "node drain"} <= paths


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "aiinfra" for p, _ in COMMANDS])
def test_help_fits_80_columns(aiinfra, monkeypatch, path, cmd):
    monkeypatch.setenv("COLUMNS", "80")
    r = aiinfra(*path, "--help")
    assert r.code == 0, r.stderr
    text = r.stdout
    assert "\x1b[" not in text
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert not too_long, too_long
    flat = " ".join(text.split())  # a help text may wrap; option names never do
    for param in cmd.params:
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), f"{opt} cut or missing"
        # "[default: ...]", "[ansible.cfg]": bracketed words in an option's help are printed as written
        for bracket in re.findall(r"\[[^\]]*\]", getattr(param, "help", None) or ""):
            assert " ".join(bracket.split()) in flat, f"{bracket} lost from {param.name}'s help"
