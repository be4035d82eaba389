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


#: The xdist group of every module that runs on the Slurm bed: one worker runs them all, one after
#: the other, on one bed (``slurm_bed``); the other workers take the rest of the suite.
SLURM_BED_GROUP = "slurm-bed"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under ``--dist loadgroup`` (``make test``), a module's tests stay on one worker: their
    module-scoped fixtures (a chroot converge, a rendered tree, the roles run once) are built once,
    not once per worker. Modules that share a bed name their group themselves (SLURM_BED_GROUP)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.fixture(scope="session")
def slurm_bed(tmp_path_factory):
    """The real Slurm test bed (tests/harness/slurm_testbed.py), brought up once per session and
    shared by tests/slurm/test_slurm_testbed.py, test_accounts_bed.py, test_node_cli.py and
    tests/training/test_sbatch_slurm.py. Skips when this machine cannot run it."""
    from harness import slurm_testbed as st

    reason = st.missing_requirements()
    if reason:
        pytest.skip(f"real Slurm test bed: {reason}")
    with st.shared_bed(tmp_path_factory.mktemp("slurm-bed")) as bed:
        yield bed
