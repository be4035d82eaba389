"""Slurm ready for users on day one, for real: accounts, members and QoS grants from the blueprint.

The session's test bed (tests/conftest.py ``slurm_bed``, tests/harness/slurm_testbed.py) runs
`aiinfra hosts up` over the fixture blueprint,
whose `slurm.accounts` name aibed-alice in `training` (QoS normal, high, low) and sync `research`
(QoS normal, low) from the unix group aibed-research. The bed's hosts share this machine's
/etc/passwd and /etc/group, so the users and the group are made with useradd/groupadd before the
bed comes up, and removed afterwards. With AccountingStorageEnforce=associations (slurm.conf as
rendered), only members of an account may submit, and only with the QoS their account grants;
`high` preempts `low` (PreemptType=preempt/qos, PreemptMode=REQUEUE).

Written for both Slurm releases the bed runs (Debian's 22.05, the pinned 24.11 built from source):
only sbatch/squeue/scontrol/sacctmgr output that both print the same way is read.
"""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
import yaml

from harness import slurm_testbed as st
from harness.testbed import wait_until

pytestmark = pytest.mark.slow

ALICE, BOB, EVE, GROUP = st.ALICE, st.BOB, st.EVE, st.GROUP  # the bed's users (made before its first run)
SYNC = "/usr/local/sbin/aiinfra-sacctmgr-sync"  # where the slurm role installs the sync


@pytest.fixture(scope="module")
def bed(slurm_bed):
    yield slurm_bed
    # the bed as this module found it: EVE in no group and no account again
    st.host_command("gpasswd", "--delete", EVE, GROUP, check=False)
    st.forget_users(slurm_bed, EVE)


def as_user(bed, user: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``command`` run as ``user`` on the controller (the caller's PATH kept: the bed may run a Slurm
    installed outside the default PATH)."""
    inner = f'runuser -u {user} -- env "PATH=$PATH" sh -c {shlex.quote(command)}'
    return bed["testbed"].ssh(bed["controller"], f"cd /tmp && timeout {int(timeout)} {inner}",
                              timeout=timeout + 10, check=False)


def submit(bed, user: str, options: str) -> str:
    result = as_user(bed, user, f"sbatch --parsable --chdir=/tmp --output=/dev/null {options} --wrap 'sleep 600'")
    assert result.returncode == 0, f"{user}: sbatch {options}: {result.stderr or result.stdout}"
    return result.stdout.strip().split(";")[0]


def job_state(bed, job: str) -> str:
    return st.on_controller(bed, f"timeout 20 squeue -h -j {job} -o %T").strip()


def restarts(bed, job: str) -> int:
    fields = st.on_controller(bed, f"timeout 20 scontrol -o show job {job}").split()
    return int(next(f for f in fields if f.startswith("Restarts=")).split("=", 1)[1])


def associations(bed) -> dict[tuple[str, str], list[str]]:
    out = st.on_controller(
        bed, "timeout 20 sacctmgr -nP show assoc cluster=testbed format=account,user,fairshare,qos,defaultqos")
    return {(a, u): rest for a, u, *rest in (line.split("|") for line in out.splitlines())}


def sync(bed) -> dict:
    """The role's sync, run again on the controller with the accounting the render gave the role."""
    group_vars = bed["root"] / "manifests" / st.STACK / "ansible" / "group_vars" / "all" / "slurm.yml"
    accounting = yaml.safe_load(group_vars.read_text())["aiinfra_slurm_accounting"]
    path = bed["testbed"].workdir / "accounting.json"  # the bed's hosts share this file system
    path.write_text(json.dumps(accounting))
    return json.loads(st.on_controller(bed, f"timeout 120 {SYNC} < {path}", timeout=130))


def test_hosts_up_creates_the_accounts_and_their_members(bed):
    first = bed["first"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assoc = associations(bed)
    # the fixture: alice named in training (fairshare 10 in slurm.users), bob from research's group
    assert assoc[("training", ALICE)] == ["10", "high,low,normal", "normal"], assoc
    assert assoc[("research", BOB)][1:] == ["low,normal", "low"], assoc
    assert assoc[("training", "")][0] == "60" and assoc[("research", "")][0] == "40", assoc
    assert not [key for key in assoc if key[1] == EVE], assoc


def test_a_user_in_no_account_cannot_submit(bed):
    result = as_user(bed, EVE, "sbatch --parsable --chdir=/tmp --output=/dev/null --wrap true")
    assert result.returncode != 0, result.stdout
    assert "account" in result.stderr.lower(), result.stderr  # "Invalid account or account/partition ..."


def test_a_member_cannot_use_a_qos_its_account_does_not_grant(bed):
    result = as_user(bed, BOB, "sbatch --parsable --chdir=/tmp --output=/dev/null --qos=high --wrap true")
    assert result.returncode != 0, result.stdout
    assert "qos" in result.stderr.lower(), result.stderr  # "Invalid qos specification"


def test_high_preempts_a_low_job_of_another_user(bed):
    nodes = len(bed["nodes"])
    low = submit(bed, BOB, f"--qos=low -N{nodes} --gres=gpu:8")  # every GPU of the bed
    high = None
    try:
        wait_until(f"low job {low} running", lambda: job_state(bed, low) == "RUNNING", 90, 1)
        high = submit(bed, ALICE, "--qos=high -N1 --gres=gpu:8")
        try:
            wait_until(f"high job {high} running", lambda: job_state(bed, high) == "RUNNING", 90, 1)
        except TimeoutError as exc:
            diagnostics = bed["testbed"].ssh(bed["controller"], f"squeue -a; scontrol show job {low} {high}",
                                             timeout=60, check=False)
            raise AssertionError(f"{exc}\n{diagnostics.stdout}\n{diagnostics.stderr}") from None
        # the low job was requeued (PreemptMode=REQUEUE), not left running beside it
        assert job_state(bed, low) != "RUNNING"
        assert restarts(bed, low) >= 1
        account = st.on_controller(bed, f"timeout 20 squeue -h -j {high} -o %a").strip()
        assert account == "training"  # alice's default account: her only one
    finally:
        st.on_controller(bed, f"timeout 20 scancel {low} {high or ''}")


def test_sync_changes_nothing_again_and_follows_the_group(bed):
    assert sync(bed)["changed"] is False  # hosts up applied everything already
    st.host_command("gpasswd", "--add", EVE, GROUP)
    again = sync(bed)
    assert again["changed"] is True and any(EVE in a and "research" in a for a in again["actions"]), again
    assert sync(bed)["changed"] is False

    def accepted() -> str | None:
        result = as_user(bed, EVE, "sbatch --parsable --chdir=/tmp --output=/dev/null --wrap true")
        return result.stdout.strip() if result.returncode == 0 else None

    # slurmdbd pushes the new association to slurmctld
    job = wait_until(f"{EVE} may submit once in {GROUP}", accepted, 30, 1).split(";")[0]
    # slurmctld keeps a finished job for MinJobAge (300 s by default): scontrol still shows it
    fields = st.on_controller(bed, f"timeout 20 scontrol -o show job {job}").split()
    assert "Account=research" in fields, fields
