"""The containerd and kubernetes roles converge on this machine, twice (the second run changes
nothing). Tasks that need a package repository, the running kernel, systemd or a kubelet carry
the tags packages, kernel, service, kubelet and are skipped; every file the roles write goes
below a temporary folder through the roles' path variables."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, load_stack

SKIP_TAGS = "packages,kernel,service,kubelet"
HOST = "gpu02"  # dev's Kubernetes GPU worker


def _playbook() -> Path:
    path = Path(sys.executable).with_name("ansible-playbook")
    if not path.exists():
        found = shutil.which("ansible-playbook")
        if not found:
            pytest.skip("ansible-playbook is not installed")
        path = Path(found)
    return path


def _run(root: Path) -> subprocess.CompletedProcess:
    overrides = {"all": {"hosts": {HOST: {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "containerd_service_manager": "none",
        "kubernetes_service_manager": "none",
        "containerd_config_dir": f"{root}/etc/containerd",
        "containerd_dropin_dir": f"{root}/etc/containerd/conf.d",
        "containerd_modules_load_path": f"{root}/etc/modules-load.d/aiinfra-containerd.conf",
        "containerd_sysctl_path": f"{root}/etc/sysctl.d/90-aiinfra-containerd.conf",
        "containerd_crictl_config_path": f"{root}/etc/crictl.yaml",
        "kubernetes_config_dir": f"{root}/etc/kubernetes/aiinfra",
        "kubernetes_kubelet_env_path": f"{root}/etc/default/kubelet",
    }}}}
    inventory = root / "overrides.yml"
    inventory.write_text(yaml.safe_dump(overrides))
    (root / "etc" / "default").mkdir(parents=True, exist_ok=True)  # exists on every real host
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(root / "facts")}
    return subprocess.run(
        [str(_playbook()), "-i", str(ROOT / "manifests" / "dev" / "ansible" / "inventory.json"), "-i", str(inventory),
         str(ROOT / "playbooks" / "kubernetes.yml"), "--limit", HOST, "--skip-tags", SKIP_TAGS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _recap(out: str) -> dict[str, int]:
    match = re.search(rf"^{HOST}\s*:\s*(.*)$", out, flags=re.M)
    assert match, out[-2000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.mark.slow
def test_roles_converge_and_a_second_run_changes_nothing(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the roles write root-owned files (run as root, as CI does)")
    first = _run(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert _recap(first.stdout)["changed"] > 0
    second = _run(tmp_path)
    assert second.returncode == 0, second.stdout[-3000:]
    assert _recap(second.stdout)["changed"] == 0, second.stdout[-3000:]

    kubelet_env = (tmp_path / "etc" / "default" / "kubelet").read_text()
    nodes = yaml.safe_load((ROOT / "manifests" / "dev" / "k8s-hosts" / "nodes.yaml").read_text())
    labels = ",".join(f"{k}={v}" for k, v in sorted(nodes[HOST]["labels"].items()))
    assert f'--node-labels={labels} --register-with-taints=nvidia.com/gpu=present:NoSchedule"' in kubelet_env
    config = (tmp_path / "etc" / "containerd" / "config.toml").read_text()
    assert "SystemdCgroup = true" in config and f'imports = ["{tmp_path}/etc/containerd/conf.d/*.toml"]' in config
    node_config = [d for d in yaml.safe_load_all(
        (tmp_path / "etc" / "kubernetes" / "aiinfra" / "kubeadm-node.yaml").read_text()) if d]
    init = next(d for d in node_config if d["kind"] == "InitConfiguration")
    planned = load_stack("dev").cluster.hosts[HOST].management_address  # the host's own address, as planned
    assert init["nodeRegistration"]["name"] == HOST and init["localAPIEndpoint"]["advertiseAddress"] == planned
