"""Every host role has the shape STYLE.md asks for and documents every variable it offers."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import ROOT

ROLES = ["common", "nvidia_driver", "infiniband", "lustre_client", "gpfs_client", "nvmeof", "container_runtime", "dcgm", "node_exporter", "slurm_exporter",
         "nccl_tests", "megatron_lm"]


@pytest.mark.parametrize("role", ROLES)
def test_role_shape_and_variable_table(role):
    base = ROOT / "roles" / role
    for part in ("defaults/main.yml", "tasks/main.yml", "tasks/validate.yml", "tasks/verify.yml",
                 "handlers/main.yml", "meta/main.yml", "README.md"):
        assert (base / part).exists(), part
    main = (base / "tasks" / "main.yml").read_text()
    assert main.index("validate.yml") < main.index("install.yml") < main.index("verify.yml")
    defaults = yaml.safe_load((base / "defaults" / "main.yml").read_text())
    assert all(name.startswith(f"{role}_") for name in defaults), [n for n in defaults if not n.startswith(role)]
    table = set(re.findall(r"^\| `([a-z0-9_]+)` \|", (base / "README.md").read_text(), flags=re.M))
    assert set(defaults) == table
    text = (base / "defaults" / "main.yml").read_text()
    for name in defaults:  # a comment above or beside each variable
        line = next(i for i, ln in enumerate(text.splitlines()) if ln.startswith(f"{name}:"))
        lines = text.splitlines()
        assert "#" in lines[line] or lines[line - 1].startswith("#"), name
    if (base / "vars").exists() and role != "nvmeof":
        assert (base / "vars" / "Debian.yml").exists() and (base / "vars" / "RedHat.yml").exists()


@pytest.mark.parametrize("role", ROLES)
def test_internal_variables_start_with_an_underscore_and_the_role(role):
    for path in (ROOT / "roles" / role / "vars").glob("*.yml"):
        for name in yaml.safe_load(path.read_text()) or {}:
            assert name.startswith(f"_{role}_"), (path.name, name)
