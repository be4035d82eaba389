"""The checks the roles ship (roles/*/files), run against the fakes in fakes/: passing and failing.

The same fakes stand in for nvidia-smi, ibstat, lfs, dcgmi and nvme in the chroot converge; here
they run on this machine, switched to "broken" through a flag file the tests point them at.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

FAKES = Path(__file__).resolve().parent / "fakes"


def load_script(role: str, name: str):
    path = ROOT / "roles" / role / "files" / name
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def fake_output(name: str, *args: str, broken: bool = False) -> str:
    """Run a fake with its flag file redirected: the fakes test /etc/aiinfra-test/broken."""
    script = (FAKES / name).read_text()
    if not broken:
        script = script.replace("/etc/aiinfra-test/broken", "/nonexistent/aiinfra-test-broken")
    else:
        script = script.replace("[ -e /etc/aiinfra-test/broken ]", "true")
    return subprocess.run(["sh", "-c", script, name, *args], capture_output=True, text=True, check=False).stdout


@pytest.fixture
def fakebin(tmp_path):
    """A directory of fakes; ``make(broken)`` writes them, healthy or broken."""

    def make(broken: bool) -> Path:
        for fake in FAKES.iterdir():
            text = fake.read_text()
            text = text.replace("[ -e /etc/aiinfra-test/broken ]", "true" if broken else "false")
            path = tmp_path / fake.name
            path.write_text(text)
            path.chmod(0o755)
        return tmp_path

    return make


# ------------------------------------------------------------------ infiniband: aiinfra-hca-check

HCA = load_script("infiniband", "aiinfra-hca-check")
EXPECT = {f"mlx5_{i}": 400 for i in range(8)} | {"mlx5_8": 0}


def test_hca_check_passes_when_every_port_is_active_at_the_rate(fakebin):
    cas = HCA.parse_ibstat(subprocess.run([fakebin(False) / "ibstat"], capture_output=True, text=True).stdout)
    assert set(cas) == {f"mlx5_{i}" for i in range(9)}
    assert cas["mlx5_0"][1]["Rate"] == "400" and cas["mlx5_0"][1]["State"] == "Active"
    assert HCA.problems(cas, EXPECT, 1) == []


def test_hca_check_names_a_down_port_and_a_wrong_rate(fakebin):
    bin_ = fakebin(True)
    rc = HCA.main([f"--ibstat={bin_ / 'ibstat'}", *(f"--expect={h}={r}" for h, r in EXPECT.items())])
    assert rc == 1
    cas = HCA.parse_ibstat(subprocess.run([bin_ / "ibstat"], capture_output=True, text=True).stdout)
    found = HCA.problems(cas, EXPECT, 1)
    assert "mlx5_3: port 1 runs at 200 Gb/s, the blueprint declares 400" in found
    assert "mlx5_5: port 1 is Down (physical state Polling), not Active" in found
    assert len(found) == 2


def test_hca_check_reports_a_missing_hca():
    assert HCA.problems({}, {"mlx5_9": 400}, 1) == ["mlx5_9: not found by ibstat"]


def test_the_catalog_rate_is_what_ibstat_prints_for_ndr():
    from aiinfra.catalog.links import link_rate

    assert link_rate("ndr400").ibstat_rate == 400


# ------------------------------------------------------------------ nvmeof: aiinfra-nvmeof-check

NVME = load_script("nvmeof", "aiinfra-nvmeof-check")
NQNS = ["nqn.2025-01.kr.nacc:scratch01", "nqn.2025-01.kr.nacc:scratch02"]


def test_nvmeof_check_passes_with_a_live_path_per_subsystem(fakebin):
    rc = NVME.main([f"--nvme={fakebin(False) / 'nvme'}", *(f"--nqn={n}" for n in NQNS)])
    assert rc == 0


def test_nvmeof_check_names_the_subsystem_without_a_live_path(fakebin, capsys):
    rc = NVME.main([f"--nvme={fakebin(True) / 'nvme'}", *(f"--nqn={n}" for n in NQNS), "--nqn=nqn.2025-01.x:gone"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "nqn.2025-01.kr.nacc:scratch02: no live rdma path (rdma connecting)" in out
    assert "nqn.2025-01.x:gone: not connected" in out
    assert "scratch01" not in out


def test_nvmeof_check_reads_the_flat_nvme_cli_1_layout():
    data = {"Subsystems": [{"NQN": NQNS[0], "Paths": [{"Transport": "rdma", "State": "live"}]}]}
    assert NVME.problems(NVME.subsystems(data), NQNS[:1], "rdma") == []


# ------------------------------------------------------------------ dcgm: aiinfra-gpu-health

HEALTH = load_script("dcgm", "aiinfra-gpu-health")


def settings(tmp_path: Path, bin_: Path) -> Path:
    path = tmp_path / "gpu-health.json"
    path.write_text(json.dumps({"nvidia_smi": str(bin_ / "nvidia-smi"), "dcgmi": str(bin_ / "dcgmi"),
                                "state_dir": str(tmp_path / "run"), "diag_file": str(tmp_path / "diag.json")}))
    return path


def test_gpu_health_ok_feeds_slurm_eight_gpus_and_npd_ok(fakebin, tmp_path, capsys):
    conf = settings(tmp_path, fakebin(False))
    assert HEALTH.main(["slurm-gpus", "--settings", str(conf)]) == 0
    assert capsys.readouterr().out.split() == [str(i) for i in range(8)]
    assert HEALTH.main(["npd", "--settings", str(conf)]) == 0
    assert "8 GPUs healthy" in capsys.readouterr().out


def test_gpu_health_failure_drops_the_gpu_for_slurm_and_sets_the_npd_condition(fakebin, tmp_path, capsys):
    conf = settings(tmp_path, fakebin(True))  # 7 GPUs seen, GPU 3 fails DCGM health
    assert HEALTH.main(["check", "--settings", str(conf)]) == 1
    assert "GPU 3: Failure" in capsys.readouterr().out
    assert HEALTH.main(["slurm-gpus", "--settings", str(conf)]) == 0
    assert capsys.readouterr().out.split() == ["0", "1", "2", "4", "5", "6"]  # the Slurm check drains: 6 != 8
    assert HEALTH.main(["npd", "--settings", str(conf)]) == 1
    # the node-problem-detector plugin reads the same state with /bin/sh only
    npd = ROOT / "roles" / "dcgm" / "files" / "aiinfra-gpu-health-npd"
    r = subprocess.run(["sh", str(npd)], capture_output=True, text=True,
                       env={"AIINFRA_GPU_HEALTH_STATE": str(tmp_path / "run" / "gpu-health.state")})
    assert r.returncode == 1 and "GPU 3: Failure" in r.stdout


def test_a_failed_diagnostic_keeps_the_node_unhealthy(fakebin, tmp_path):
    conf = settings(tmp_path, fakebin(False))
    (tmp_path / "diag.json").write_text(json.dumps({"ok": False, "level": 3, "failed_gpus": [5]}))
    assert HEALTH.main(["check", "--settings", str(conf)]) == 1
    assert "GPU 5" in (tmp_path / "run" / "gpu-health.state").read_text()


def test_dcgm_down_is_unknown_and_slurm_still_counts_the_gpus(fakebin, tmp_path, capsys):
    bin_ = fakebin(False)
    (bin_ / "dcgmi").write_text("#!/bin/sh\necho 'Error: unable to connect to host engine' >&2\nexit 1\n")
    conf = settings(tmp_path, bin_)
    assert HEALTH.main(["check", "--settings", str(conf)]) == 2
    capsys.readouterr()
    assert HEALTH.main(["slurm-gpus", "--settings", str(conf)]) == 0
    assert len(capsys.readouterr().out.split()) == 8


def test_diag_json_failures_are_attributed_to_gpus():
    data = {"tests": [{"name": "memory", "results": [{"gpu_id": "2", "status": "Fail", "info": "DBE"},
                                                     {"gpu_id": "1", "status": "Pass"}]}]}
    assert HEALTH.failed_gpus_of_diag(data) == {2}


def test_health_table_parsing():
    overall, per_gpu = HEALTH.parse_health(
        "| Overall Health | Warning |\n| GPU ID: 0 | Healthy |\n| GPU ID: 6 | Warning |\n")
    assert overall == "Warning" and per_gpu == {0: "Healthy", 6: "Warning"}
