"""The munge and slurm roles and the site playbook pass yamllint (ansible-lint's production profile:
tests/hostroles/test_lint.py, over every role) and have the shape STYLE.md describes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

TARGETS = ["roles/munge", "roles/slurm", "playbooks/site.yml"]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str | None:
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name)


@pytest.mark.skipif(not _tool("yamllint"), reason="yamllint not installed")
def test_yamllint():
    out = subprocess.run([_tool("yamllint"), "-s", "-c", "tests/slurm/yamllint.yml", *TARGETS], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("role", ["munge", "slurm"])
def test_role_shape(role):
    base = ROOT / "roles" / role
    main = yaml.safe_load((base / "tasks" / "main.yml").read_text())
    # slurm checks the installed release once its configuration is in place, before a daemon starts
    version = ["version.yml"] if role == "slurm" else []
    assert [t["ansible.builtin.import_tasks"] for t in main] == [
        "validate.yml", "install.yml", "configure.yml", *version, "service.yml", "verify.yml"]
    for part in ("defaults/main.yml", "handlers/main.yml", "meta/main.yml", "README.md"):
        assert (base / part).is_file(), part
    defaults = yaml.safe_load((base / "defaults" / "main.yml").read_text())
    assert all(name.startswith(f"{role}_") for name in defaults), sorted(defaults)
    readme = (base / "README.md").read_text()
    for name in defaults:
        assert f"`{name}`" in readme, f"{name} is not in the README's table"


def test_no_secret_has_a_default():
    munge = yaml.safe_load((ROOT / "roles/munge/defaults/main.yml").read_text())
    slurm = yaml.safe_load((ROOT / "roles/slurm/defaults/main.yml").read_text())
    assert "munge_key" not in munge and "slurm_dbd_storage_pass" not in slurm
