"""The rendered sbatch script on a real Slurm cluster (the test bed of tests/harness), 2 nodes x 8 GPUs.

The session's test bed (tests/conftest.py ``slurm_bed``) carries a training job in its copy of the
fixture blueprint (``harness.slurm_testbed.add_training_job``); the script
rendered for it is the production template, run with its two switches: AIINFRA_NO_CONTAINER=1 (no
pyxis here) and AIINFRA_PROGRAM=<a stand-in that records what each rank sees>. Checked: every
rank's MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK and NCCL variables, the nodes inside
one SU (--switches), the GPUs (--gres), and the USR1 path: checkpoint signal, requeue, resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import slurm_testbed as st
from harness.testbed import wait_until

pytestmark = pytest.mark.slow

STANDIN = Path(__file__).with_name("standin_launcher.py")


@pytest.fixture(scope="module")
def bed(slurm_bed):
    up = slurm_bed["first"]
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    return slurm_bed


def submit(bed, out: Path, sleep_s: float = 0) -> str:
    out.mkdir(mode=0o777)
    env = (f"AIINFRA_NO_CONTAINER=1 AIINFRA_PROGRAM='/usr/bin/python3 {STANDIN}' AIINFRA_STANDIN_OUT={out} "
           f"AIINFRA_STANDIN_SLEEP={sleep_s}")
    return st.on_controller(bed, f"cd {out} && {env} timeout 30 sbatch --parsable {bed['script']}").strip().split(";")[0]


def finished(bed, job: str) -> bool:
    """The job left the queue (sacct is no help: the test bed's accounting database outlives its job ids)."""
    result = bed["testbed"].ssh(bed["controller"], f"timeout 20 squeue -h -j {job} -o %T", check=False)
    return result.returncode != 0 or not result.stdout.strip()


def output_of(out: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(out.glob("*.out")))


def test_every_rank_sees_its_place_and_the_fabric(bed):
    out = bed["work"] / "ranks"
    job = submit(bed, out)
    wait_until(f"job {job} finished", lambda: finished(bed, job), 120, 1)
    assert "aiinfra: requeueing" not in output_of(out)
    records = {int(p.name.split("-")[1]): json.loads(p.read_text()) for p in out.glob("rank-*-0.json")}
    assert sorted(records) == list(range(16)), output_of(out)[-3000:]
    hosts = sorted({r["host"] for r in records.values()})
    assert hosts in (["gpu01", "gpu02"], ["gpu03", "gpu04"]), hosts  # --switches=1: one SU
    script = bed["script"].read_text()
    for rank, r in records.items():
        env = r["env"]
        assert env["WORLD_SIZE"] == "16" and env["RANK"] == str(rank)
        assert env["LOCAL_RANK"] == str(rank % 8) and env["LOCAL_WORLD_SIZE"] == "8"
        assert env["MASTER_ADDR"] == hosts[0]
        assert env["MASTER_PORT"] == str(20000 + int(job) % 20000)
        assert r["host"] == hosts[rank // 8]  # block distribution: ranks 0-7 on the first node
        assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
        assert env["NCCL_IB_HCA"] == "=mlx5_0:1,mlx5_1:1" and env["UCX_NET_DEVICES"] == "mlx5_0:1,mlx5_1:1"
        assert env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
        assert r["argv"][:2] == ["--tensor-model-parallel-size", "8"] and "--global-batch-size" in r["argv"]
    assert "#SBATCH --switches=1" in script and "#SBATCH --gres=gpu:8" in script


def test_usr1_before_the_time_limit_checkpoints_requeues_and_resumes(bed):
    out = bed["work"] / "usr1"
    job = submit(bed, out, sleep_s=120)
    wait_until("ranks started", lambda: len(list(out.glob("rank-*-0.json"))) == 16 or finished(bed, job), 60, 0.5)
    assert len(list(out.glob("rank-*-0.json"))) == 16, output_of(out)[-3000:]
    st.on_controller(bed, f"timeout 20 scancel --batch --signal=USR1 {job}")  # what --signal=B:USR1@N sends
    wait_until("every rank got SIGTERM", lambda: len(list(out.glob("term-*-0"))) == 16, 60, 0.5)
    st.release_requeued(bed["testbed"], bed["controller"], job)
    wait_until("the requeued job ran again", lambda: len(list(out.glob("rank-*-1.json"))) == 16, 180, 1)
    wait_until(f"job {job} finished", lambda: finished(bed, job), 120, 1)
    assert "aiinfra: requeueing job" in output_of(out)
    first = json.loads((out / "rank-0-1.json").read_text())
    assert "--load" in first["argv"]  # the restart resumes from the checkpoint folder
