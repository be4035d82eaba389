"""The Slurm test bed: the fixture blueprint, its hosts (network namespaces), fake hardware and the
extra variables a real `aiinfra hosts up` over them needs. Used by tests/slurm/ and the benchmark.

Fake hardware, all under /run/aiinfra-testbed (FAKE_ROOT):
  dev/nvidia0..7                  character devices (major 195) for gres.conf File= (shared)
  <node>/gpus/nvidia0..7          what the health check's GPU probe counts, per node
  <node>/infiniband/<hca>/ports/1 state and rate files of the HCAs, per node
  <node>/mounts                   a mounts file with the Lustre mount, per node
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from .testbed import REQUIRED_BINARIES, Host, Testbed, missing_binaries, wait_until

CHECKOUT = Path(__file__).resolve().parents[2]
FIXTURE = CHECKOUT / "tests" / "fixtures" / "slurm-testbed"
STACK = "testbed"
FAKE_ROOT = Path("/run/aiinfra-testbed")
GATEWAY = "10.77.0.1/24"
# Debian's packages the bed's hosts find installed (no route out); Slurm itself is the pinned
# release, which the slurm role unpacks from the build scripts/build-testbed-slurm.sh made.
SLURM_BINARIES = ("munged", "mariadbd", "mysql")
# where the role (and scripts/build-testbed-slurm.sh) keep the build: the role's slurm_build_cache_dir
SLURM_BUILD_DIR = Path(yaml.safe_load((CHECKOUT / "roles" / "slurm" / "defaults" / "main.yml").read_text())
                       ["slurm_build_cache_dir"])
# The bed's build: NVML (a production build's gpu/nvml) and several slurmd per machine.
BUILD_VARS = {"slurm_build_nvml": True, "slurm_build_multiple_slurmd": True}
# Daemons' state the test bed owns on this machine (wiped before a run for deterministic job ids).
STATE_DIRS = ("/var/spool/slurmctld", "/var/spool/slurmd")


# The test bed's hosts share this machine's filesystem: only the layer under test runs on them
# (the OS-baseline and hardware roles have their own tests on a chroot).
SLURM_LAYER = "validate,munge,slurm"


def aiinfra(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, in the project at ``root`` (GPU tests skipped only when a test says so)."""
    env = {k: v for k, v in os.environ.items() if k != "AIINFRA_SKIP_GPU_TESTS"}
    return subprocess.run([sys.executable, "-m", "aiinfra.cli", *args], cwd=root, capture_output=True, text=True,
                          env={**env, "AIINFRA_ROOT": str(root), "COLUMNS": "200"}, timeout=timeout)


@contextlib.contextmanager
def running_bed(root: Path, work: Path) -> Iterator[dict]:
    """Render the project at ``root``, start its hosts, run the Slurm layer on them (the first
    ``hosts up``: ``first``, its seconds ``first_s``), and tear the hosts down afterwards."""
    rendered = aiinfra(root, "render", "--stack", STACK)
    assert rendered.returncode == 0, rendered.stderr
    testbed = Testbed(hosts_from_inventory(root), work, GATEWAY)
    nodes = compute_nodes(root)
    try:
        wipe_state()
        make_fake_hardware(nodes)
        testbed.up()
        extra = write_extra_vars(testbed, testbed.workdir / "vars.yml")
        started = time.monotonic()
        first = aiinfra(root, "hosts", "up", "--stack", STACK, "--tags", SLURM_LAYER, "-e", f"@{extra}")
        yield {"root": root, "testbed": testbed, "nodes": nodes, "extra": extra, "first": first,
               "first_s": time.monotonic() - started,
               "controller": next(h for h in testbed.hosts if h.name.startswith("ctl"))}
    finally:
        testbed.down(compute_first=nodes)


# The bed's unix users and group: the fixture blueprint's accounts name them (tests/slurm/test_accounts_bed.py)
ALICE = "aibed-alice"  # named in the fixture's account `training`
BOB = "aibed-bob"  # member of the unix group the fixture's account `research` syncs
EVE = "aibed-eve"  # in no account until a test adds her to the group
GROUP = "aibed-research"
# The training job every bed's blueprint carries (tests/training/test_sbatch_slurm.py runs its script)
TRAINING_JOB = "tb-smoke"


def host_command(*cmd: str, check: bool = True) -> None:
    """A command on this machine, whose /etc/passwd and /etc/group the bed's hosts share."""
    subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def remove_users() -> None:
    for user in (ALICE, BOB, EVE):
        host_command("userdel", user, check=False)
    host_command("groupdel", GROUP, check=False)


def add_users() -> None:
    remove_users()  # leftovers of an interrupted run
    host_command("groupadd", GROUP)
    host_command("useradd", "--no-create-home", "--shell", "/bin/sh", ALICE)
    host_command("useradd", "--no-create-home", "--shell", "/bin/sh", "--groups", GROUP, BOB)
    host_command("useradd", "--no-create-home", "--shell", "/bin/sh", EVE)


def forget_users(bed: dict, *users: str) -> None:
    """Cancel the users' jobs and delete them from the accounting (sacctmgr refuses while a job of
    theirs is active). The accounting database outlives a bed (MariaDB's files on this machine)."""
    names = ",".join(users)
    cancel = "; ".join(f"scancel -u {u}" for u in users)  # scancel takes one user
    bed["testbed"].ssh(bed["controller"], f"{cancel}; for _ in $(seq 60); do "
                       f"[ -z \"$(squeue -h -u {names})\" ] && break; sleep 1; done; "
                       f"sacctmgr -i delete user name={names}", timeout=120, check=False)


def add_training_job(root: Path, checkpoints: Path) -> None:
    """A Megatron job of two nodes in the bed's blueprint: its sbatch script is the production template."""
    path = root / "stacks" / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(path.read_text())
    bp = doc["config"]["aiinfra:cluster"]
    bp.setdefault("versions", {}).setdefault("images", {})["megatron"] = "nvcr.io/nvidia/pytorch:24.12-py3"
    # a Megatron job without an entrypoint runs the pinned Megatron-LM checkout: dev's pin
    dev = yaml.safe_load((CHECKOUT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["aiinfra:cluster"]
    bp["versions"]["megatron_lm"] = dev["versions"]["megatron_lm"]
    bp.setdefault("silence", []).append("train-checkpoint-outside-lustre")
    bp["training"] = [{
        "name": TRAINING_JOB, "model": "llama3-8b", "node_group": "gpu", "nodes": 2, "framework": "megatron",
        "tp": 8, "pp": 1, "dp": "auto", "seq_len": 4096, "global_batch": 32, "tokens": 1.0e8,
        "image": "megatron", "checkpoint_dir": str(checkpoints), "launcher": "srun",
    }]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@contextlib.contextmanager
def shared_bed(base: Path) -> Iterator[dict]:
    """The one Slurm bed of a test session (tests/conftest.py ``slurm_bed``): the fixture blueprint
    with the training job, the accounts' unix users made before the first ``hosts up`` (the role's
    sync reads the group), brought up once for every module that runs on it. Each module leaves it
    as it found it (nodes idle, users' jobs and added memberships gone). ``work``: a folder every
    user may write (job outputs, checkpoints)."""
    add_users()
    try:
        root = prepare_root(base / "root")
        work = base / "jobs"
        work.mkdir()
        work.chmod(0o777)
        add_training_job(root, work / "checkpoints")
        with running_bed(root, base / "work") as bed:
            forget_users(bed, EVE)  # in no account until a test puts her in one, whatever an earlier run left
            try:
                yield {**bed, "work": work,
                       "script": root / "manifests" / STACK / "jobs" / TRAINING_JOB / "sbatch.sh"}
            finally:
                forget_users(bed, ALICE, BOB, EVE)  # the next run starts without this run's users
    finally:
        remove_users()


def missing_requirements() -> str | None:
    """Why the real Slurm test bed cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, sshd, daemons)"
    lost = missing_binaries([*REQUIRED_BINARIES, *SLURM_BINARIES])
    sbin = [b for b in lost if b in SLURM_BINARIES and Path(f"/usr/sbin/{b}").exists()]
    lost = [b for b in lost if b not in sbin]
    if lost:
        return f"missing binaries: {', '.join(lost)} (install the packages of .ci/apt-packages.txt)"
    if not list(SLURM_BUILD_DIR.glob("slurm-*-nvml-multiple-slurmd.tar.gz")):
        return f"no Slurm build in {SLURM_BUILD_DIR} (run scripts/build-testbed-slurm.sh as root)"
    return None


def prepare_root(dest: Path) -> Path:
    """A project root (AIINFRA_ROOT) with the test bed's blueprint; manifests are rendered into it."""
    shutil.copytree(FIXTURE, dest, dirs_exist_ok=True)
    return dest


def hosts_from_inventory(root: Path) -> list[Host]:
    from aiinfra.render.inventory import INVENTORY_FILE, read_inventory

    hostvars, _ = read_inventory((root / "manifests" / STACK / INVENTORY_FILE).read_text())
    return [Host(name, hv["ansible_host"]) for name, hv in sorted(hostvars.items())]


def compute_nodes(root: Path) -> list[str]:
    from aiinfra.render.inventory import INVENTORY_FILE, read_inventory

    _, groups = read_inventory((root / "manifests" / STACK / INVENTORY_FILE).read_text())
    return sorted(groups["slurm_compute"])


def make_fake_hardware(nodes: list[str], gpus: int = 8, hcas: tuple[str, ...] = ("mlx5_0", "mlx5_1"),
                       rate_gbps: int = 400, mountpoint: str = "/lustre") -> None:
    shutil.rmtree(FAKE_ROOT, ignore_errors=True)
    dev = FAKE_ROOT / "dev"
    dev.mkdir(parents=True)
    for i in range(gpus):
        os.mknod(dev / f"nvidia{i}", 0o666 | stat.S_IFCHR, os.makedev(195, i))
    for node in nodes:
        set_fake_gpus(node, gpus)
        for hca in hcas:
            port = FAKE_ROOT / node / "infiniband" / hca / "ports" / "1"
            port.mkdir(parents=True)
            (port / "state").write_text("4: ACTIVE\n")
            (port / "rate").write_text(f"{rate_gbps} Gb/sec (4X NDR)\n")
        (FAKE_ROOT / node / "mounts").write_text(
            f"10.77.0.250@tcp:/tbfs {mountpoint} lustre rw,flock,lazystatfs 0 0\n")


def set_fake_gpus(node: str, count: int) -> None:
    gpus = FAKE_ROOT / node / "gpus"
    shutil.rmtree(gpus, ignore_errors=True)
    gpus.mkdir(parents=True)
    for i in range(count):
        (gpus / f"nvidia{i}").write_text("")


def probes() -> dict:
    """The health check's probes, pointed at the fakes (%n: the node name)."""
    return {
        "gpu_count_command": f"ls -1 {FAKE_ROOT}/%n/gpus",
        "infiniband_dir": f"{FAKE_ROOT}/%n/infiniband",
        "hca_port": 1,
        "mounts_file": f"{FAKE_ROOT}/%n/mounts",
        "scontrol": "scontrol",
        "timeout_s": 20,
    }


def write_extra_vars(testbed: Testbed, path: Path) -> Path:
    """Connection settings, the secrets (made up per run) and the no-systemd service manager."""
    data = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(testbed.key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        "munge_key": secrets.token_urlsafe(48),
        "munge_service_manager": "direct",
        "slurm_service_manager": "direct",
        "slurm_dbd_storage_pass": secrets.token_urlsafe(18),
        "slurm_nodecheck_probes": probes(),
        **BUILD_VARS,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=True))
    path.chmod(0o600)
    return path


def wipe_state() -> None:
    for d in STATE_DIRS:
        shutil.rmtree(d, ignore_errors=True)
    # the daemons' logs of earlier runs (tests read this run's)
    for log in Path("/var/log/slurm").glob("*.log"):
        log.unlink()
    # PMIx's per-job directories outlive an interrupted run; job ids restart at 1 with a fresh
    # controller state, and srun fails on a directory left by an earlier job of the same id.
    for d in Path("/tmp").glob("spmix_appdir_*"):
        shutil.rmtree(d, ignore_errors=True)


def on_controller(bed: dict, command: str, timeout: float = 60) -> str:
    """Run a shell command on the bed's Slurm controller; its stdout (the test fails on non-zero)."""
    result = bed["testbed"].ssh(bed["controller"], command, timeout=timeout, check=False)
    assert result.returncode == 0, f"{command}: {result.stderr or result.stdout}"
    return result.stdout


def release_requeued(testbed: Testbed, controller: str, job: str, deadline_s: float = 120) -> None:
    """Start a requeued job now. Slurm holds a requeued batch job until the job credential of its
    first run has expired (``begin_time = now + cred_expire + 1``, job_mgr.c; ``AuthInfo=cred_expire``,
    default 120 s, slurm.conf(5): "This also controls how long a requeued job must wait before
    starting again"). On a cluster that is two minutes of a multi-hour job; in a test it is most of
    the run, so the test does what an operator may: ``scontrol update JobId=... StartTime=now``."""
    def held() -> bool:
        r = testbed.ssh(controller, f"timeout 20 squeue -h -j {job} -o '%T %r'", timeout=30, check=False)
        return r.stdout.split() == ["PENDING", "BeginTime"]

    wait_until(f"job {job} requeued (pending on its begin time)", held, deadline_s, 0.5)
    r = testbed.ssh(controller, f"timeout 20 scontrol update JobId={job} StartTime=now", timeout=30, check=False)
    assert r.returncode == 0, r.stderr or r.stdout
