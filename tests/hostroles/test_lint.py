"""Every role and playbook passes ansible-lint's production profile (offline); the host roles yamllint."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

ROLES = ["common", "nvidia_driver", "infiniband", "lustre_client", "gpfs_client", "nvmeof", "container_runtime", "dcgm", "node_exporter", "slurm_exporter",
         "nccl_tests", "megatron_lm"]
TARGETS = [f"roles/{r}" for r in ROLES] + ["playbooks/rolling.yml"]
BIN = ROOT / ".venv" / "bin"


def tool(name: str) -> str | None:
    return str(BIN / name) if (BIN / name).exists() else shutil.which(name)


@pytest.mark.slow
@pytest.mark.skipif(tool("ansible-lint") is None, reason="ansible-lint is not installed (pip install ansible-lint)")
def test_ansible_lint_production_profile():
    # every role and playbook in one run (ansible-lint takes seconds to start): the host roles above,
    # munge and slurm, the Kubernetes roles, site.yml, rolling.yml and kubernetes.yml
    playbooks = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "playbooks").glob("*.yml"))]
    r = subprocess.run([tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor", "roles", *playbooks],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "Profile 'production' was required, and it passed" in r.stdout + r.stderr


@pytest.mark.skipif(tool("yamllint") is None, reason="yamllint is not installed")
def test_yamllint():
    config = "{extends: default, rules: {line-length: {max: 140}, document-start: disable, truthy: {check-keys: false}}}"
    yaml_files = [str(p.relative_to(ROOT)) for t in TARGETS for p in sorted(Path(ROOT / t).glob("**/*.yml"))]
    yaml_files += [str(p.relative_to(ROOT)) for p in sorted((ROOT / "tests" / "hostroles").glob("*.yml"))]
    yaml_files += ["playbooks/rolling.yml", "playbooks/vars/rollout-defaults.yml"]
    r = subprocess.run([tool("yamllint"), "-s", "-d", config, *sorted(set(yaml_files))], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout
