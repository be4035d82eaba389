"""Shared fixtures: the project root, loaded stacks, and the CLI run in-process."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiinfra.pipeline import Built, build_file

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def aiinfra(capsys, monkeypatch):
    """Run ``aiinfra ARGS...`` in-process, exactly as the console script does."""
    from aiinfra.cli import main

    def run(*args: str, cwd: Path = ROOT) -> CliResult:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["aiinfra", *args])
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def render(built: Built, only: list[str] | None = None) -> dict[str, str]:
    """The artifacts of a built environment (what ``aiinfra render`` writes), in memory."""
    from aiinfra.render import render_all

    return render_all(built.cluster, built.plan, only=only)


_CACHE: dict[str, Built] = {}


def load_stack(env: str) -> Built:
    if env not in _CACHE:
        _CACHE[env] = build_file(ROOT / "stacks" / f"Pulumi.{env}.yaml", f"stacks/Pulumi.{env}.yaml")
    return _CACHE[env]


@pytest.fixture(scope="session")
def prod() -> Built:
    return load_stack("prod")


@pytest.fixture(scope="session")
def dev() -> Built:
    return load_stack("dev")
