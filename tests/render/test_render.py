"""Render: deterministic bytes, --check against the committed tree, atomic writes, the inventory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import aiinfra.render as render_pkg
from aiinfra.render.inventory import INVENTORY_FILE, dynamic_list, inventory_model
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
    # node groups hold their hosts; role, scheduler and GPU groups take node groups as children
    assert inv["gpu_train"]["hosts"] == gpus[:480] and inv["gpu_serve"]["hosts"] == gpus[480:]
    assert inv["gpu_nodes"] == {"children": ["gpu_train", "gpu_serve"]}
    assert inv["slurm_compute"]["children"] == ["gpu_train"] and "hosts" not in inv["slurm_compute"]
    assert inv["k8s_worker"]["children"] == ["gpu_serve"]
    assert inv["su16"]["hosts"] == gpus[480:]
    assert inv["slurm_controller"] == {"children": ["mgmt"]}
    assert inv["gpu_train"]["vars"]["aiinfra_gpu_count"] == 8
    assert inv["gpu_serve"]["vars"]["aiinfra_rail_hcas"] == [f"mlx5_{i}" for i in range(8)]
    hv = inv["_meta"]["hostvars"]["gpu481"]
    assert hv["aiinfra_su"] == 16 and len(hv["aiinfra_rail_addresses"]) == 8
    assert "aiinfra_rails" not in hv and "aiinfra_node_group" not in hv  # the group's, not the host's
    one = aiinfra("inventory", "--stack", "prod", "--host", "gpu481")
    assert json.loads(one.stdout) == hv


def test_inventory_usage_errors(aiinfra):
    assert aiinfra("inventory", "--stack", "prod").code == 2
    r = aiinfra("inventory", "--stack", "prod", "--host", "gpu9999")
    assert r.code == 2 and "no host 'gpu9999'" in r.stderr


def test_static_and_dynamic_inventory_agree(prod):
    cluster = prod.cluster
    static = json.loads(render(prod, only=["inventory"])[INVENTORY_FILE])["all"]
    dynamic = dynamic_list(inventory_model(cluster))
    hostvars = {h: hv for entry in static["children"].values() for h, hv in (entry.get("hosts") or {}).items() if hv}
    assert hostvars == dynamic["_meta"]["hostvars"]
    assert set(static["children"]) == set(dynamic) - {"_meta", "all"}
    for group, entry in static["children"].items():
        assert list(entry.get("hosts") or {}) == dynamic[group].get("hosts", [])
        assert list(entry.get("children") or {}) == dynamic[group].get("children", [])
        assert entry.get("vars") == dynamic[group].get("vars")


def test_every_host_is_listed_with_its_variables_once_on_its_own_line(prod):
    lines = render(prod, only=["inventory"])[INVENTORY_FILE].splitlines()
    model = inventory_model(prod.cluster)
    for name, host in prod.cluster.hosts.items():
        own = [line for line in lines if line.startswith(f'"{name}": {{"')]
        assert len(own) == 1, name  # its variables, once (in its node group)
        assert json.loads("{" + own[0].rstrip(",") + "}")[name]["ansible_host"] == host.management_address
        member = [line for line in lines if line.rstrip(",") == f'"{name}": {{}}']
        assert len(member) == sum(name in hosts for hosts in model.hosts.values()) - 1  # its SU, node state


def test_rails_follow_from_group_and_host_variables(prod):
    """What the infiniband role builds its rails from gives back every port of the fabric model."""
    model = inventory_model(prod.cluster)
    for host in prod.cluster.hosts.values():
        hv, gv = model.hostvars[host.name], model.group_vars[prod.cluster.groups[host.group].ansible_group]
        rails = [{"rail": i, "hca": hca, "address": hv["aiinfra_rail_addresses"][i], "prefix": gv["aiinfra_rail_prefix"],
                  "leaf": model.all_vars["aiinfra_leaf_format"] % (hv["aiinfra_su"], i)}
                 for i, hca in enumerate(gv.get("aiinfra_rail_hcas", []))]
        assert rails == [{"rail": p.rail, "hca": p.hca, "address": p.ipoib_address, "prefix": p.ipoib_prefix,
                          "leaf": p.leaf} for p in host.rails]
    assert sum(len(h.rails) for h in prod.cluster.hosts.values()) == 512 * 8


def _ansible_inventory(tmp_path) -> tuple[Path, dict]:
    bindir = Path(sys.executable).parent
    ansible_inventory = bindir / "ansible-inventory"
    if not ansible_inventory.exists():
        pytest.skip("ansible-core is not installed in this environment")
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "AIINFRA_STACK": "prod", "ANSIBLE_LOCAL_TEMP": str(tmp_path),
           "HOME": str(tmp_path), "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    return ansible_inventory, env


@pytest.fixture(scope="module")
def prod_static(prod, tmp_path_factory) -> Path:
    """prod's inventory and group_vars as `aiinfra render` writes them (the committed tree may be stale)."""
    out = tmp_path_factory.mktemp("static")
    for rel, text in render(prod, only=["inventory", "host_vars"]).items():
        if rel.startswith("ansible/"):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text(text)
    return out / INVENTORY_FILE


def test_ansible_reads_both_inventories(tmp_path, prod_static):
    ansible_inventory, env = _ansible_inventory(tmp_path)
    for source in ("playbooks/inventory.sh", str(prod_static)):
        out = subprocess.run([str(ansible_inventory), "-i", source, "--graph", "su03"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "gpu065" in out.stdout and "gpu096" in out.stdout and "gpu097" not in out.stdout


def test_dynamic_and_static_inventories_give_every_host_the_same_variables(tmp_path, prod_static):
    """`ansible-inventory --list` merges group variables (the inventory's and group_vars/all's) into
    every host's: both sources must agree on all of them, and on every group."""
    ansible_inventory, env = _ansible_inventory(tmp_path)
    lists = []
    for source in ("playbooks/inventory.sh", str(prod_static)):
        out = subprocess.run([str(ansible_inventory), "-i", source, "--list"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        lists.append(json.loads(out.stdout))
    dynamic, static = lists
    gpu481 = static["_meta"]["hostvars"]["gpu481"]
    for name in ("aiinfra_lustre", "aiinfra_nvmeof", "aiinfra_fabric", "aiinfra_rollout", "aiinfra_storage_network",
                 "aiinfra_ibstat_rates", "aiinfra_rail_hcas", "aiinfra_rail_addresses", "aiinfra_env"):
        assert gpu481.get(name), name
    assert gpu481["aiinfra_node_group"] == "gpu-serve"
    assert set(static["_meta"]["hostvars"]) == set(dynamic["_meta"]["hostvars"]) == set(inventory_model(
        load_stack("prod").cluster).hostvars)
    for host, hv in static["_meta"]["hostvars"].items():
        assert dynamic["_meta"]["hostvars"][host] == hv, host
    assert {k: v for k, v in dynamic.items() if k != "_meta"} == {k: v for k, v in static.items() if k != "_meta"}
