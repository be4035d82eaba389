"""validate refuses an OS the host roles cannot install on, and the list of apt-only roles is
what the roles' tasks really do."""

from __future__ import annotations

import re

import pytest
import yaml

from aiinfra.checks.host_os import APT_ONLY_ROLES
from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data
from conftest import ROOT

RPM_TASK = re.compile(r"ansible\.builtin\.(dnf|yum|rpm_key|yum_repository)\b|os_family[^\n]*RedHat")


def _rpm_capable(role: str) -> bool:
    return any(RPM_TASK.search(p.read_text()) for p in (ROOT / "roles" / role).rglob("*.yml"))


def test_the_apt_only_list_is_what_the_roles_do():
    for role in APT_ONLY_ROLES:
        tasks = "".join(p.read_text() for p in (ROOT / "roles" / role / "tasks").glob("*.yml"))
        assert "ansible.builtin.apt" in tasks, role
        assert not _rpm_capable(role), f"{role} now handles the RedHat family: take it off APT_ONLY_ROLES"


@pytest.mark.parametrize("os_name", ["rocky-9", "rhel-9"])
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_a_redhat_os_is_refused_naming_the_roles(env, os_name):
    bp = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())["config"]["aiinfra:cluster"]
    bp["versions"]["os"] = os_name
    bp["versions"]["kernel"] = "5.14.0-503.14.1.el9_5.x86_64"
    with pytest.raises(BlueprintError) as exc:
        build_data(bp, f"{env}.yaml", env)
    hits = [p for p in exc.value.problems if p.id == "os-unsupported-by-roles"]
    assert [p.path for p in hits] == [("versions", "os")], [p.format("x") for p in exc.value.problems]
    for role in ("munge", "slurm", "containerd", "kubernetes"):  # both stacks run Slurm and Kubernetes
        assert role in hits[0].message
    assert "ubuntu-22.04" in hits[0].hint
