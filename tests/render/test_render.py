"""Render: deterministic bytes, --check against the committed tree, atomic writes, the inventory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import aiinfra.render as render_pkg
from aiinfra.render.inventory import dynamic_list, inventory_model
from aiinfra.render.writer import diff_tree, files_on_disk, write_tree
from conftest import ROOT, load_stack, render


@pytest.fixture
def project(tmp_path):
    """A copy of the project files render needs, so tests may write manifests/."""
    for name in ("Pulumi.yaml", "stacks", "templates"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    return tmp_path


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_rendering_twice_gives_identical_bytes(env):
    built = load_stack(env)
    assert render(built) == render(built)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_committed_manifests_equal_a_fresh_render(aiinfra, env):
    r = aiinfra("render", "--stack", env, "--check")
    assert r.code == 0, r.stderr


def test_check_fails_after_a_committed_manifest_is_edited(aiinfra, project):
    target = project / "manifests" / "dev" / "cluster.json"
    target.write_text(target.read_text().replace('"gpus": 16', '"gpus": 17'))
    (project / "manifests" / "dev" / "stray.yaml").write_text("x: 1\n")
    r = aiinfra("render", "--stack", "dev", "--check", cwd=project)
    assert r.code == 1
    assert "changed: cluster.json" in r.stderr
    assert "stale: stray.yaml" in r.stderr
    before = target.read_text()
    r = aiinfra("render", "--stack", "dev", cwd=project)  # a hand edit is refused by name (test_writer.py)
    assert r.code == 1 and "cluster.json" in r.stderr and "stray.yaml" in r.stderr
    assert aiinfra("render", "--stack", "dev", "--force", cwd=project).code == 0
    assert target.read_text() != before
    assert not (project / "manifests" / "dev" / "stray.yaml").exists()
    assert aiinfra("render", "--stack", "dev", "--check", cwd=project).code == 0


def test_a_renderer_that_fails_midway_leaves_the_tree_untouched(aiinfra, project, monkeypatch, tmp_path):
    before = {p: f.read_bytes() for p, f in files_on_disk(project / "manifests" / "dev").items()}

    def broken(cluster, plan):
        raise RuntimeError("renderer failed")

    monkeypatch.setitem(render_pkg._REGISTRY, "zz-broken", render_pkg.Renderer("zz-broken", broken, "fails"))
    monkeypatch.setenv("AIINFRA_REPORT_DIR", str(tmp_path))
    r = aiinfra("render", "--stack", "dev", cwd=project)
    assert r.code == 70 and "internal error: RuntimeError" in r.stderr  # a defect, told apart from a refusal
    after = {p: f.read_bytes() for p, f in files_on_disk(project / "manifests" / "dev").items()}
    assert after == before


def test_a_write_that_fails_midway_leaves_the_tree_untouched(project, monkeypatch):
    target = project / "manifests" / "dev"
    before = {p: f.read_bytes() for p, f in files_on_disk(target).items()}
    artifacts = {"a.txt": "new\n", "b/c.txt": "new\n", "d.txt": "new\n"}
    calls = {"n": 0}
    real = Path.write_text

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", flaky)
    with pytest.raises(OSError):
        write_tree(target, artifacts)
    monkeypatch.undo()
    assert {p: f.read_bytes() for p, f in files_on_disk(target).items()} == before
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    write_tree(target, artifacts)
    assert diff_tree(target, artifacts).clean


def test_an_invalid_blueprint_renders_nothing(aiinfra, project):
    stack = project / "stacks" / "Pulumi.dev.yaml"
    stack.write_text(stack.read_text().replace("model: h100-80gb", "model: h100-80g"))
    shutil.rmtree(project / "manifests" / "dev")
    r = aiinfra("render", "--stack", "dev", cwd=project)
    assert r.code == 1
    assert not (project / "manifests" / "dev").exists()


def test_inventory_lists_every_gpu_node_in_its_groups(aiinfra):
    r = aiinfra("inventory", "--stack", "prod", "--list")
    assert r.code == 0
    inv = json.loads(r.stdout)
    gpus = [f"gpu{i:03d}" for i in range(1, 513)]
    assert inv["gpu_nodes"]["hosts"] == gpus
    assert inv["gpu_train"]["hosts"] == gpus[:480]
    assert inv["slurm_compute"]["hosts"] == gpus[:480]
    assert inv["k8s_worker"]["hosts"] == gpus[480:]
    assert inv["su16"]["hosts"] == gpus[480:]
    assert inv["slurm_controller"]["hosts"] == ["mgmt01", "mgmt02"]
    assert inv["gpu_train"]["vars"]["aiinfra_gpu_count"] == 8
    hv = inv["_meta"]["hostvars"]["gpu481"]
    assert hv["aiinfra_su"] == 16 and hv["aiinfra_rails"][7]["hca"] == "mlx5_7"
    one = aiinfra("inventory", "--stack", "prod", "--host", "gpu481")
    assert json.loads(one.stdout) == hv


def test_inventory_usage_errors(aiinfra):
    assert aiinfra("inventory", "--stack", "prod").code == 2
    r = aiinfra("inventory", "--stack", "prod", "--host", "gpu9999")
    assert r.code == 2 and "no host 'gpu9999'" in r.stderr


def test_static_and_dynamic_inventory_agree(prod):
    cluster = prod.cluster
    static = yaml.safe_load(render(prod, only=["inventory"])["ansible/inventory.yml"])["all"]
    dynamic = dynamic_list(inventory_model(cluster))
    assert static["hosts"] == dynamic["_meta"]["hostvars"]
    for group, entry in static["children"].items():
        assert sorted(entry["hosts"] or {}) == sorted(dynamic[group]["hosts"])  # an empty group: "hosts:" (null)


def test_ansible_reads_both_inventories(tmp_path):
    bindir = Path(sys.executable).parent
    ansible_inventory = bindir / "ansible-inventory"
    if not ansible_inventory.exists():
        pytest.skip("ansible-core is not installed in this environment")
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "AIINFRA_STACK": "prod", "ANSIBLE_LOCAL_TEMP": str(tmp_path),
           "HOME": str(tmp_path), "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    for source in ("playbooks/inventory.sh", "manifests/prod/ansible/inventory.yml"):
        out = subprocess.run([str(ansible_inventory), "-i", source, "--graph", "su03"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "gpu065" in out.stdout and "gpu096" in out.stdout and "gpu097" not in out.stdout
