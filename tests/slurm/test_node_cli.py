"""`aiinfra node` on the real Slurm test bed: drain/resume seen in `sinfo -R`, a requeue-able job
on a node set down resumes from its checkpoint on another node, and `replace` returns a node
whose health check passes and keeps out one whose (fake) GPUs are missing.

The bed is the session's (tests/conftest.py ``slurm_bed``; tests/harness: network namespaces with
real slurmctld, slurmd, munge and sshd, configured by a real `aiinfra hosts up`), shared with the
other bed modules; every test here leaves its node idle again. scontrol runs on the controller through `aiinfra node` (ad-hoc Ansible), exactly as
in production. The GPUs are fake, so `replace` runs with --skip-gpu-tests and the gate is the
slurm role's health check, whose GPU probe counts FAKE_ROOT/<node>/gpus.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import slurm_testbed as st
from harness.testbed import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bed(slurm_bed):
    first = slurm_bed["first"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    wait_until("nodes idle", lambda: all(_state(slurm_bed, n) == "idle" for n in slurm_bed["nodes"]) or None, 90, 1)
    return slurm_bed


def node(bed, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return st.aiinfra(bed["root"], "node", *args, "--stack", st.STACK, "-e", f"@{bed['extra']}", timeout=timeout)


def _state(bed, name: str) -> str:
    return st.on_controller(bed, f"timeout 20 sinfo -h -n {name} -o %t").strip()


def _reasons(bed) -> list[str]:
    return st.on_controller(bed, "timeout 20 sinfo -R -h -o '%N|%E'").splitlines()


def _wait_idle(bed, name: str, deadline_s: float = 90) -> None:
    # a resumed node may show idle* until slurmd's next registration reaches slurmctld
    wait_until(f"{name} idle", lambda: _state(bed, name) == "idle" or None, deadline_s, 1)


def test_drain_and_resume_show_in_sinfo_with_the_reason(bed):
    host = bed["nodes"][0]
    reason = "aiinfra test: XID 79 GPU3"
    drained = node(bed, "drain", host, "--reason", reason)
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert re.search(rf"{host}\s.*slurm\s.*drained\s.*XID 79 GPU3", drained.stdout), drained.stdout
    assert f"{host}|{reason}" in _reasons(bed)
    assert _state(bed, host) == "drain"
    assert f"add under nodes: {host}: {{state: drain, reason: '{reason}'}}" in drained.stdout, drained.stdout

    status = node(bed, "status", host, "--json")
    assert status.returncode == 0, status.stderr
    row = json.loads(status.stdout)["nodes"][0]
    assert (row["state"], row["reason"], row["blueprint"]) == ("drained", reason, "in service")
    assert row["set_by"].startswith("root ") and row["detail"] == "IDLE+DRAIN", row

    resumed = node(bed, "resume", host)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not [line for line in _reasons(bed) if line.startswith(f"{host}|")]
    assert "already records this" in resumed.stdout  # the blueprint never had it out
    _wait_idle(bed, host)


JOB = """#!/bin/bash
#SBATCH --job-name=ckpt
#SBATCH --requeue
#SBATCH --nodes=1
#SBATCH --output={dir}/slurm-%j.out
#SBATCH --open-mode=append
# A training job in miniature: a step counter checkpointed in a shared folder, resumed from it.
dir={dir}
step=$(cat "$dir/step" 2>/dev/null || echo 0)
echo "start node=$SLURMD_NODENAME restart=${{SLURM_RESTART_COUNT:-0}} from=$step" >> "$dir/log"
while [ "$step" -lt {steps} ]; do
  step=$((step + 1))
  echo "$step $SLURMD_NODENAME" >> "$dir/steps"
  echo "$step" > "$dir/step.tmp" && mv "$dir/step.tmp" "$dir/step"
  sleep 0.5
done
echo "done node=$SLURMD_NODENAME" >> "$dir/log"
"""


def test_down_requeues_a_job_that_resumes_from_its_checkpoint_elsewhere(bed):
    ckpt = bed["testbed"].workdir / "ckpt"
    ckpt.mkdir()
    steps = 40
    (ckpt / "job.sh").write_text(JOB.format(dir=ckpt, steps=steps))
    job = st.on_controller(bed, f"timeout 30 sbatch --parsable {ckpt}/job.sh").strip().split(";")[0]
    step = ckpt / "step"
    wait_until("the job's third step", lambda: step.exists() and int(step.read_text() or 0) >= 3, 90, 0.5)
    first = st.on_controller(bed, f"timeout 20 squeue -h -j {job} -o %N").strip()
    assert first in bed["nodes"], first
    try:
        down = node(bed, "down", first, "--reason", "aiinfra test: requeue")
        assert down.returncode == 0, down.stdout + down.stderr
        assert _state(bed, first).startswith("down"), _state(bed, first)
        assert f"{first}|aiinfra test: requeue" in _reasons(bed)
        assert f"add under nodes: {first}: {{state: down, reason: 'aiinfra test: requeue'}}" in down.stdout

        st.release_requeued(bed["testbed"], bed["controller"], job)

        def finished():
            log = (ckpt / "log").read_text() if (ckpt / "log").exists() else ""
            return log if "done" in log else None

        try:
            log = wait_until(f"job {job} requeued and finished", finished, 300, 1)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n" + st.on_controller(bed, f"scontrol show job {job}; sinfo -N")) from None
    finally:
        resumed = node(bed, "resume", first)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    starts = re.findall(r"start node=(\S+) restart=(\d+) from=(\d+)", log)
    assert len(starts) == 2, log
    (node_a, restart_a, from_a), (node_b, restart_b, from_b) = starts
    assert (node_a, restart_a, from_a) == (first, "0", "0"), log
    assert node_b != first and restart_b == "1" and int(from_b) >= 3, log  # resumed, not restarted
    assert re.search(rf"done node={node_b}", log)
    done_steps = [int(line.split()[0]) for line in (ckpt / "steps").read_text().splitlines()]
    assert sorted(set(done_steps)) == list(range(1, steps + 1))
    assert len(done_steps) <= steps + 1  # at most the step in flight at the kill runs twice
    shown = st.on_controller(bed, f"timeout 20 scontrol show job {job}")
    assert "Restarts=1" in shown and "JobState=COMPLETED" in shown, shown
    _wait_idle(bed, first)


def _slurmd_paths(bed, host: str) -> tuple[Path, Path]:
    """The node's slurmd pid file and spool folder, as the rendered slurm.conf names them (%n: the node)."""
    conf = (bed["root"] / "manifests" / st.STACK / "slurm" / "slurm.conf").read_text()
    setting = dict(re.findall(r"^(SlurmdPidFile|SlurmdSpoolDir)=(\S+)", conf, re.M))
    return (Path(setting["SlurmdPidFile"].replace("%n", host)), Path(setting["SlurmdSpoolDir"].replace("%n", host)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_replace_brings_a_swapped_node_back_from_nothing(bed):
    host = bed["nodes"][2]
    down = node(bed, "down", host, "--reason", "aiinfra test: GPU board swap")
    assert down.returncode == 0, down.stdout + down.stderr
    # the swap: the node comes back without its slurmd running and without its slurmd state
    pidfile, spool = _slurmd_paths(bed, host)
    old = int(pidfile.read_text())
    os.kill(old, 15)
    wait_until(f"slurmd of {host} to stop", lambda: not _alive(old), 30, 0.2)
    shutil.rmtree(spool)
    pidfile.unlink(missing_ok=True)

    # the operator's own reservation (docs/operations.md, adding an SU) keeps other jobs off the
    # node after replace resumes it; replace's reservation (MAINT) overlaps it
    outer = "aiinfra-test-su"
    st.on_controller(bed, f"timeout 20 scontrol create reservation ReservationName={outer} Nodes={host} "
                       "StartTime=now Duration=60 Users=root Flags=MAINT,IGNORE_JOBS")
    try:
        # --render: a no-op unless aiinfra's renderers changed since the fixture rendered the tree
        replaced = node(bed, "replace", host, "--skip-gpu-tests", "--tags", st.SLURM_LAYER, "--render", timeout=600)
        assert replaced.returncode == 0, replaced.stdout[-4000:] + replaced.stderr[-3000:]
        assert f"{host}: health check: pass" in replaced.stdout, replaced.stdout
        assert f"{host}: dcgmi diag -r 2: skipped: --skip-gpu-tests given" in replaced.stdout, replaced.stdout
        # the host roles started slurmd again (changed), then the gate passed and the node was resumed
        assert re.search(rf"{host}\s.*changed\s.*resumed", replaced.stdout), replaced.stdout
        new = int(pidfile.read_text())
        assert new != old and _alive(new) and spool.is_dir()
        reservations = st.on_controller(bed, "timeout 20 scontrol show reservation")
        assert f"ReservationName={outer}" in reservations and "aiinfra-replace" not in reservations, reservations
    finally:
        st.on_controller(bed, f"timeout 20 scontrol delete ReservationName={outer}")
    _wait_idle(bed, host)
    assert not [line for line in _reasons(bed) if line.startswith(f"{host}|")]
    assert "aiinfra-replace" not in st.on_controller(bed, "timeout 20 scontrol show reservation")


def test_replace_keeps_a_node_down_when_its_gpu_check_fails(bed):
    host = bed["nodes"][3]
    reason = "aiinfra test: RMA 4711"
    down = node(bed, "down", host, "--reason", reason)
    assert down.returncode == 0, down.stdout + down.stderr
    (st.FAKE_ROOT / host / "gpus" / "nvidia7").unlink()  # the new board shows 7 of its 8 GPUs
    try:
        replaced = node(bed, "replace", host, "--skip-gpu-tests", "--tags", st.SLURM_LAYER, "--render", timeout=600)
        assert replaced.returncode == 1, replaced.stdout[-4000:] + replaced.stderr[-3000:]
        assert f"{host}: not resumed: health check: {host}: aiinfra-nodecheck: 7 GPUs, GRES says 8" \
            in replaced.stderr, replaced.stdout[-3000:] + replaced.stderr
        assert _state(bed, host).startswith("down"), _state(bed, host)
        assert f"{host}|{reason}" in _reasons(bed)  # back as it was, reason and all
        assert "aiinfra-replace" not in st.on_controller(bed, "timeout 20 scontrol show reservation")
    finally:
        st.set_fake_gpus(host, 8)
    resumed = node(bed, "resume", host)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _wait_idle(bed, host)
