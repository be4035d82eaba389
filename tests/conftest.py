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


#: The modules that run on the Slurm bed (``slurm_bed``): under ``make test`` (pytest-xdist), one
#: worker runs them all, one after the other, on one bed; the other workers take the rest.
SLURM_BED_MODULES = ("tests/slurm/test_accounts_bed.py", "tests/slurm/test_node_cli.py",
                     "tests/slurm/test_slurm_testbed.py", "tests/training/test_sbatch_slurm.py")
SLURM_BED_GROUP = "slurm-bed"


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The bed's modules first: under xdist, work is handed out in collection order, so the longest
    unit starts at once on one worker. Only those modules may take the bed."""
    for item in items:
        if "slurm_bed" in getattr(item, "fixturenames", ()) and _module(item.nodeid) not in SLURM_BED_MODULES:
            raise pytest.UsageError(f"{item.nodeid} uses slurm_bed: add its module to SLURM_BED_MODULES")
    items.sort(key=lambda item: _module(item.nodeid) not in SLURM_BED_MODULES)


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadscope`` by module, the bed's modules one unit: a module's tests stay on one
    worker, so its module fixtures (a chroot converge, a rendered tree) are built once, and the bed
    comes up once. Units go out in collection order (the bed's first), not largest first."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesBedFirst(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module(nodeid)
            return SLURM_BED_GROUP if module in SLURM_BED_MODULES else module

    config.option.loadscopereorder = False
    return ModulesBedFirst(config, log)


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
