"""One place for every version: the roles pin none of their own, they take each one from the blueprint's
``versions`` (the inventory's ``aiinfra_versions``), and the paths the job roles install to are the ones
the rendered jobs run from."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from aiinfra.checks.host_versions import NEEDED
from conftest import ROOT, load_stack, render

from .ansible_run import ansible_playbook, run_playbook
from .inventory import mini_inventory

HERE = Path(__file__).resolve().parent

# A release written into a file: 1.17.5, v0.20.0, 3.10, 2.26.2-1 (a number with at least one dot)
VERSION = re.compile(r"(?<![\d.])v?\d+\.\d+(?:\.\d+)*(?:-\d[\w]*)?(?![\d])")
# What looks like a version but is not one (file: literal -> why). Keep it short: a real pin goes to versions.
NOT_VERSIONS = {
    ("roles/kubernetes/defaults/main.yml", "1.1"): "pkgs.k8s.io's Debian revision of every build (kubelet=1.31.7-1.1)",
    ("roles/infiniband/vars/Debian.yml", "22.04"): "the OS release assumed when distribution facts are absent",
    ("roles/lustre_client/vars/Debian.yml", "22.04"): "the OS release assumed when distribution facts are absent",
    ("roles/nvidia_driver/vars/Debian.yml", "22.04"): "the OS release assumed when distribution facts are absent",
}
ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")  # IPv4 addresses (127.0.0.1) are not versions
SECONDS = re.compile(r"\b(?:sleep|makestep)\s+\d+\.\d+")  # shell and chrony durations


def pinned_literals(path: str, text: str) -> list[str]:
    """Version literals in ``text`` outside comments, addresses and durations, less the allowed ones."""
    found = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("#", "{#")):
            continue
        code = re.sub(r"\s#\s.*$", "", line)  # a trailing YAML comment
        code = SECONDS.sub("", ADDRESS.sub("", code))
        found += [m.group(0) for m in VERSION.finditer(code) if (path, m.group(0)) not in NOT_VERSIONS]
    return found


def role_files() -> list[Path]:
    roles = ROOT / "roles"
    return sorted([*roles.glob("*/defaults/main.yml"), *roles.glob("*/vars/*.yml"),
                   *(p for p in roles.glob("*/templates/**/*") if p.is_file())])


def test_no_role_pins_a_version_of_its_own():
    hits = {}
    for path in role_files():
        rel = str(path.relative_to(ROOT))
        found = pinned_literals(rel, path.read_text())
        if found:
            hits[rel] = found
    assert hits == {}, f"pinned in a role (move them to the blueprint's versions): {hits}"


@pytest.mark.parametrize(("text", "found"), [
    ("container_runtime_toolkit_version: 1.17.5\n", ["1.17.5"]),
    ("containerd_sandbox_image: registry.k8s.io/pause:3.10\n", ["3.10"]),
    ('url: "https://github.com/NVIDIA/pyxis/archive/refs/tags/v0.20.0.tar.gz"\n', ["v0.20.0"]),
    ("pkgs: [libnccl2=2.26.2-1+cuda12.8]\n", ["2.26.2-1", "12.8"]),
    ("# dcgm 4.2.3 in a comment\nlisten: 127.0.0.1:9400\n", []),
    ("x_version: \"{{ aiinfra_versions.dcgm | default('') }}\"  # e.g. 4.2.3\n", []),
])
def test_the_scan_finds_a_pinned_version(text, found):
    assert pinned_literals("roles/x/defaults/main.yml", text) == found


def test_the_allowed_literals_are_still_there():
    for (path, literal), why in NOT_VERSIONS.items():
        assert literal in (ROOT / path).read_text(), (path, literal, why)


def test_every_host_version_has_a_role_that_reads_it_from_the_inventory():
    for key, (role, _, _) in NEEDED.items():
        defaults = (ROOT / "roles" / role / "defaults" / "main.yml").read_text()
        assert f"aiinfra_versions.{key}" in defaults, (role, key)
    assert "aiinfra_versions.images" in (ROOT / "roles/containerd/defaults/main.yml").read_text()


needs_ansible = pytest.mark.skipif(shutil.which(ansible_playbook()) is None and not Path(ansible_playbook()).exists(),
                                   reason="ansible-playbook is not installed")


@needs_ansible
def test_ansible_evaluates_each_role_default_to_the_blueprints_version(tmp_path):
    built = load_stack("prod")
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"]["aiinfra:cluster"]["versions"]
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(mini_inventory(built, ["gpu001", "gpu500"]))
    out = tmp_path / "out"
    out.mkdir()
    r = run_playbook(HERE / "render-version-defaults.yml", inventory, "-e", f"out={out}")
    assert r.rc == 0, r.tail()
    files = render(built, only=["jobs", "acceptance"])
    for host in ("gpu001", "gpu500"):
        v = json.loads((out / f"{host}.json").read_text())
        for key in ("nvidia_driver", "container_toolkit", "enroot", "pyxis", "dcgm", "nccl_tests", "megatron_lm"):
            assert v[key] == str(raw[key]), (host, key)
        assert v["pause"] == raw["images"]["pause"]
        assert f"libnccl-dev={raw['nccl']}-1+cuda{raw['cuda']}" in v["nccl_tests_packages"]
        assert v["megatron_lm_enabled"] is True
        # the prefix the nccl_tests role installs to is the acceptance job's binaries' folder, and the
        # Megatron-LM checkout is where every Megatron job's program is
        assert f"BIN=${{NCCL_TESTS_BIN:-{v['nccl_tests_prefix']}/bin}}" in files["acceptance/train/nccl-tests.sbatch"]
        assert v["nccl_tests_prefix"].endswith("/" + raw["nccl_tests"])
        programs = {re.search(r"AIINFRA_PROGRAM:-python3 -u (\S+)}", t)[1] for p, t in files.items()
                    if p.endswith("sbatch.sh") and "megatron arguments" in t}
        assert programs == {f"{v['megatron_lm_path']}/pretrain_gpt.py"}
        assert raw["megatron_lm"] in v["megatron_lm_path"]


def test_show_prints_every_pinned_version(aiinfra, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    r = aiinfra("show", "--stack", "prod")
    assert r.code == 0, r.stderr
    versions = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"]["aiinfra:cluster"]["versions"]
    tables = r.stdout[r.stdout.index("\nversions\n"):].splitlines()  # from the versions header on
    for key, value in versions.items():
        for name, pin in (value.items() if isinstance(value, dict) else [(key, value)]):
            line = next((ln for ln in tables if re.search(rf"[│|]\s*{re.escape(name)}\s*[│|]", ln)), "")
            assert str(pin) in line, (key, name, pin)
