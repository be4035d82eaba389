"""Slurm for real: `aiinfra hosts up` configures five hosts made on this machine, twice.

The hosts are network namespaces with their own address, hostname and key-only sshd
(tests/harness/testbed.py); the blueprint is tests/fixtures/slurm-testbed (Debian 12's Slurm
22.05, four 8-GPU nodes in two SUs, fake GPU character devices). One module-scoped fixture brings
the test bed up and runs the playbook once; the tests then check what the cluster does.
Teardown stops every process of every namespace (compute nodes first) even after a failure.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from harness import slurm_testbed as st
from harness.testbed import wait_until

pytestmark = pytest.mark.slow

REASON = st.missing_requirements()


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    if REASON:
        pytest.skip(f"real Slurm test bed: {REASON}")
    root = st.prepare_root(tmp_path_factory.mktemp("slurm-testbed"))
    with st.running_bed(root, tmp_path_factory.mktemp("testbed-work")) as bed:
        yield bed


def test_first_run_configures_every_host(bed):
    first = bed["first"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for host in bed["testbed"].hosts:
        assert re.search(rf"{host.name}\s.*\s(changed|ok)\s", first.stdout), first.stdout
    print(f"first run: {bed['first_s']:.1f} s")


def test_every_node_idle_with_its_gpus(bed):
    out = wait_until("nodes idle", lambda: _idle(bed), 60, 1)
    assert sorted(out) == bed["nodes"]
    assert set(out.values()) == {"gpu:h100:8"}


def _idle(bed) -> dict[str, str] | None:
    lines = st.on_controller(bed, "timeout 20 sinfo -h -N -o '%N %t %G'").split()
    rows = dict(zip(lines[0::3], zip(lines[1::3], lines[2::3], strict=True), strict=True))
    if all(state == "idle" for state, _ in rows.values()):
        return {n: re.sub(r"\(.*\)$", "", g) for n, (_, g) in rows.items()}
    return None


def test_srun_sees_two_gpus(bed):
    out = st.on_controller(bed, "timeout 60 srun -N1 --gres=gpu:2 env | grep ^CUDA_VISIBLE_DEVICES=")
    assert out.strip() == "CUDA_VISIBLE_DEVICES=0,1"


def test_sbatch_inside_one_switch_and_accounted(bed):
    # job ids restart with a fresh controller state while the accounting database keeps older
    # records: only jobs since this submission count
    since = st.on_controller(bed, "date +%Y-%m-%dT%H:%M:%S").strip()
    # --mpi=none: the test-bed hosts share one /tmp, where PMIx's per-node directories of a two-node
    # step collide (seen as a step "aborted before step completely launched"); real nodes have their own
    job = st.on_controller(
        bed, "timeout 30 sbatch --parsable -N2 --switches=1 --gres=gpu:1 --wrap 'srun --mpi=none hostname'").strip()
    job_id = job.split(";")[0]

    def done():
        out = st.on_controller(bed, f"timeout 20 sacct -n -X -P -S {since} -j {job_id} -o State,NodeList,AllocTRES")
        return out.strip() if out.startswith("COMPLETED") else None

    try:
        state, nodelist, tres = wait_until(f"job {job_id} completed in the accounting", done, 90, 1).split("|")
    except TimeoutError as exc:
        diagnostics = bed["testbed"].ssh(
            bed["controller"], f"squeue -a; scontrol show job {job_id}; sacct -a -P -o JobID,State,ExitCode,Submit,"
            f"NodeList; sinfo -N -o '%N %t %G'", timeout=60, check=False)
        raise AssertionError(f"{exc}\n{diagnostics.stdout}\n{diagnostics.stderr}") from None
    # two nodes of one SU (su01: gpu[01-02], su02: gpu[03-04])
    assert nodelist in ("gpu[01-02]", "gpu[03-04]"), nodelist
    assert "gres/gpu=2" in tres, tres
    topology = st.on_controller(bed, "timeout 20 scontrol show topology")
    assert "SwitchName=spine" in topology and "Switches=su[01-02]" in topology


def test_health_check_drains_a_node_with_a_wrong_gpu_count(bed):
    node = next(h for h in bed["testbed"].hosts if h.name == bed["nodes"][-1])
    st.set_fake_gpus(node.name, 7)
    try:
        result = bed["testbed"].ssh(node, "/usr/local/sbin/aiinfra-nodecheck", check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "7 GPUs, GRES says 8" in result.stdout, result.stdout + result.stderr
        reasons = st.on_controller(bed, "timeout 20 sinfo -R -h -o '%N|%E'")
        assert f"{node.name}|aiinfra-nodecheck: 7 GPUs, GRES says 8" in reasons.splitlines(), (
            reasons + result.stdout + result.stderr + st.on_controller(bed, "sinfo -R; scontrol show node " + node.name))
        state = st.on_controller(bed, f"timeout 20 sinfo -h -n {node.name} -o %t").strip()
        assert state.startswith("drain"), state
    finally:
        st.set_fake_gpus(node.name, 8)
    # healthy again: the check resumes the node it drained itself
    result = bed["testbed"].ssh(node, "/usr/local/sbin/aiinfra-nodecheck", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # resumed: idle again (a loaded machine may show idle* until slurmd's next ping reaches slurmctld)
    wait_until(f"{node.name} idle again",
               lambda: st.on_controller(bed, f"timeout 20 sinfo -h -n {node.name} -o %t").strip() == "idle" or None,
               60, 2)


def test_check_mode_shows_the_diff_and_changes_nothing(bed):
    # A hand edit on the hosts (they share this machine's /etc/slurm): check mode must report it as
    # a change with its diff, and leave the edit in place.
    conf = Path("/etc/slurm/cgroup.conf")
    rendered = conf.read_text()
    edited = rendered + "# hand edit\n"
    conf.write_text(edited)
    try:
        result = st.aiinfra(bed["root"], "hosts", "up", "--stack", st.STACK, "--tags", st.SLURM_LAYER, "--check",
                         "-e", f"@{bed['extra']}")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "would change:" in result.stdout and "-# hand edit" in result.stdout, result.stdout[-3000:]
        assert not re.search(r"\b0 change\(s\)", result.stdout), result.stdout[-1000:]
        assert conf.read_text() == edited  # nothing was written
    finally:
        conf.write_text(rendered)


def test_second_run_changes_nothing(bed):
    started = time.monotonic()
    second = st.aiinfra(bed["root"], "hosts", "up", "--stack", st.STACK, "--tags", st.SLURM_LAYER, "-e", f"@{bed['extra']}")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert re.search(r"\b0 change\(s\)", second.stdout), second.stdout
    runs = sorted((bed["root"] / ".aiinfra" / "runs").iterdir())
    assert len(runs) >= 2 and (runs[-1] / "artifacts").is_dir()
    print(f"second run: {time.monotonic() - started:.1f} s")


def test_no_secret_in_manifests_or_run_logs(bed):
    extra = bed["extra"].read_text()
    secrets = [line.split(":", 1)[1].strip() for line in extra.splitlines()
               if line.startswith(("munge_key:", "slurm_dbd_storage_pass:"))]
    assert len(secrets) == 2
    for folder in (bed["root"] / "manifests", bed["root"] / ".aiinfra" / "runs"):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix != ".pyc":
                text = path.read_text(errors="replace")
                for secret in secrets:
                    assert secret not in text, f"a secret leaked into {path}"
    dbd = st.on_controller(bed, "stat -c %a /etc/slurm/slurmdbd.conf").strip()
    assert dbd == "600"
