"""The slurm role's source build (roles/slurm/files/aiinfra-build-slurm) and what feeds it.

The full build and the role's install run on the test bed (test_slurm_testbed.py: every daemon
runs the pinned release). Here: the build script's refusals before it compiles anything, and the
agreement between the render, the catalog, the role and the machine set-up."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from aiinfra.catalog.versions import SLURM_SOURCES
from aiinfra.pipeline import build_file
from aiinfra.render.slurm import install_settings
from conftest import ROOT

BUILD = ROOT / "roles" / "slurm" / "files" / "aiinfra-build-slurm"


def _tarball(path: Path, version: str) -> str:
    """A release-shaped tarball (top directory, META) and its SHA-256."""
    meta = f"  Name:\t\tslurm\n  Version:\t{version}\n".encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("slurm-slurm-24-11-5-1/META")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build(tmp_path: Path, source: Path, sha256: str, version: str = "24.11.5"):
    return subprocess.run(["bash", str(BUILD), "--source", str(source), "--sha256", sha256, "--version", version,
                           "--prefix", "/opt/slurm/" + version, "--out", str(tmp_path / "out.tar.gz")],
                          capture_output=True, text=True, timeout=60)


def test_build_refuses_a_tarball_with_another_checksum(tmp_path):
    src = tmp_path / "slurm.tar.gz"
    real = _tarball(src, "24.11.5")
    r = _build(tmp_path, src, "0" * 64)
    assert r.returncode == 1
    assert f"SHA-256 {real}, expected {'0' * 64}" in r.stderr
    assert not (tmp_path / "out.tar.gz").exists()


def test_build_refuses_a_tarball_of_another_release(tmp_path):
    src = tmp_path / "slurm.tar.gz"
    sha = _tarball(src, "24.11.4")
    r = _build(tmp_path, src, sha)
    assert r.returncode == 1
    assert "is not Slurm 24.11.5" in r.stderr and "24.11.4" in r.stderr, r.stderr
    assert not (tmp_path / "out.tar.gz").exists()


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_role_gets_the_catalog_tarball_of_the_pinned_release(env):
    built = build_file(ROOT / "stacks" / f"Pulumi.{env}.yaml")
    inst = install_settings(built.cluster)
    pin = built.cluster.blueprint.versions.slurm
    assert inst["method"] == "source" and inst["version"] == pin
    assert (inst["source_url"], inst["source_sha256"]) == (SLURM_SOURCES[pin].url, SLURM_SOURCES[pin].sha256)
    assert inst["prefix"] == f"/opt/slurm/{pin}" and inst["current"] == "/opt/slurm/current"
    # gres.conf asks for NVML in both environments: the role builds and checks the gpu/nvml plugin
    assert inst["nvml"] is (built.cluster.blueprint.slurm.gres_autodetect == "nvml")


def test_machine_set_up_installs_what_the_role_builds_with():
    defaults = yaml.safe_load((ROOT / "roles" / "slurm" / "defaults" / "main.yml").read_text())
    listed = {line.strip() for line in (ROOT / ".ci" / "apt-packages.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    # the bed's hosts have no route out: the role's apt tasks find everything installed
    assert set(defaults["slurm_build_packages"]) <= listed
    assert {"libpmix-dev", "mariadb-server"} <= listed
    assert set(defaults["slurm_mail_packages"]) <= listed
