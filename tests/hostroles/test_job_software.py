"""nccl_tests and megatron_lm run for real on a test host (the chroot tree of test_converge.py).

What runs here: the packages (git, make, g++, Debian's Open MPI), the checkout of the pinned tag from a
git mirror, the refusal of a checkout that is not the recorded commit, the install paths the inventory
gives, a second run that changes nothing, and the role in check mode with the build task included.
What does not: the build itself and its verification (tag ``cuda_build``): it needs nvcc and NCCL from
NVIDIA's CUDA repository (tag ``nvidia_repo``), which this project's test machines cannot reach and
Debian does not package (Debian 12 has no libnccl). The git mirror is made by the test: upstream
GitHub is not reachable here, so the commit is the test repository's, given as the role's variable.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import load_stack, render

from .ansible_run import run_playbook
from .chroot_host import chroot_test_marks, host_tree
from .inventory import mini_inventory

HERE = Path(__file__).resolve().parent
HOST = "gpu001"  # prod: a Slurm GPU node (nccl_tests runs on slurm_compute:&gpu_nodes)
SKIP = "nvidia_repo,cuda_build"

pytestmark = chroot_test_marks()


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def mirror_repo(tree: Path, work: Path, name: str, files: dict[str, str], tag: str, annotated: bool) -> str:
    """A bare repository at /srv/git/<name>.git inside the tree holding ``files`` at ``tag``; its commit."""
    src = work / name
    src.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=src)
    for path, text in files.items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(text)
    _git("add", "-A", cwd=src)
    _git("commit", "-q", "-m", "release", cwd=src)
    _git(*(["tag", "-a", "-m", tag, tag] if annotated else ["tag", tag]), cwd=src)
    bare = tree / "srv/git" / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    _git("clone", "-q", "--bare", str(src), str(bare), cwd=work)
    return _git("rev-parse", f"{tag}^{{commit}}", cwd=src)


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jobsoftware")
    built = load_stack("prod")
    software = json.loads(json.dumps(mini_vars(built)["aiinfra_job_software"]))
    with host_tree(tmp / "host") as tree:
        nccl = software["nccl_tests"]
        mega = software["megatron_lm"]
        nccl_commit = mirror_repo(tree, tmp, "nccl-tests", {"src/Makefile": "# test release\n"}, nccl["tag"], False)
        mega_commit = mirror_repo(tree, tmp, "megatron-lm", {"pretrain_gpt.py": "", "megatron/core/__init__.py": ""},
                                  mega["tag"], True)
        inventory = tmp / "inventory.yml"
        inventory.write_text(mini_inventory(built, [HOST], {HOST: {
            "ansible_connection": "aiinfra_chroot", "ansible_host": str(tree)}}))
        extra = tmp / "vars.yml"
        extra.write_text(yaml.safe_dump({
            "nccl_tests_repository": "file:///srv/git/nccl-tests.git", "nccl_tests_commit": nccl_commit,
            "megatron_lm_repository": "file:///srv/git/megatron-lm.git", "megatron_lm_commit": mega_commit,
        }))
        yield {"tree": tree, "inventory": inventory, "extra": extra, "built": built, "software": software,
               "commits": {"nccl_tests": nccl_commit, "megatron_lm": mega_commit}}


def mini_vars(built) -> dict:
    return yaml.safe_load(mini_inventory(built, [HOST]))["all"]["vars"]


def play(bed, *args: str):
    return run_playbook(HERE / "job-software.yml", bed["inventory"], "-e", f"@{bed['extra']}", *args)


@pytest.fixture(scope="module")
def converged(bed):
    first = play(bed, "--skip-tags", SKIP)
    assert first.rc == 0, first.tail()
    return first


def test_the_roles_check_out_the_pinned_releases_where_the_rendered_jobs_look(converged, bed):
    tree, software = bed["tree"], bed["software"]
    files = render(bed["built"], only=["jobs", "acceptance"])
    # nccl-tests: the checkout at the prefix the acceptance job's BIN default is under
    prefix = software["nccl_tests"]["path"]
    assert _git("rev-parse", "HEAD", cwd=tree / prefix.lstrip("/") / "src") == bed["commits"]["nccl_tests"]
    script = files["acceptance/train/nccl-tests.sbatch"]
    assert f"BIN=${{NCCL_TESTS_BIN:-{prefix}/bin}}" in script
    # Debian's Open MPI, installed by the role, is where MPI_HOME says: mpi.h and libmpi.so
    mpi_home = yaml.safe_load((HERE.parents[1] / "roles/nccl_tests/defaults/main.yml").read_text())["nccl_tests_mpi_home"]
    assert (tree / mpi_home.lstrip("/") / "include/mpi.h").is_file()
    assert (tree / mpi_home.lstrip("/") / "lib/libmpi.so").exists()
    # Megatron-LM: the program every Megatron job's batch script starts is in the checkout
    path = software["megatron_lm"]["path"]
    assert _git("rev-parse", "HEAD", cwd=tree / path.lstrip("/")) == bed["commits"]["megatron_lm"]
    for job in bed["built"].plan.jobs:
        if job.framework == "megatron" and job.scheduler == "slurm":
            text = files[f"jobs/{job.name}/sbatch.sh"]
            program = shlex.split(text.split("AIINFRA_PROGRAM:-", 1)[1].split("}", 1)[0])[-1]
            assert program == f"{path}/pretrain_gpt.py" and (tree / program.lstrip("/")).is_file()


def test_a_second_run_changes_nothing(converged, bed):
    second = play(bed, "--skip-tags", SKIP)
    assert second.rc == 0, second.tail()
    assert second.changed_tasks(HOST) == []


def test_a_checkout_that_is_not_the_recorded_commit_is_refused(converged, bed):
    wrong = "f" * 40
    r = play(bed, "--skip-tags", SKIP, "-e", f"nccl_tests_commit={wrong}", "--tags", "nccl_tests")
    assert r.rc != 0
    assert f"is commit {bed['commits']['nccl_tests']}, not {wrong}" in r.stdout
    r = play(bed, "--skip-tags", SKIP, "-e", f"megatron_lm_commit={wrong}", "--tags", "megatron_lm")
    assert r.rc != 0
    assert f"commit {bed['commits']['megatron_lm']}, not {wrong}" in r.stdout.replace("\n", " ")


def test_check_mode_runs_the_role_through_the_build(converged, bed):
    """The build and install tasks in check mode (no nvcc here: they report what they would run)."""
    r = play(bed, "--check", "--skip-tags", "nvidia_repo,verify", "--tags", "nccl_tests")
    assert r.rc == 0, r.tail()
    assert "TASK [nccl_tests : Build with MPI against the pinned CUDA and NCCL]" in r.stdout
    assert "TASK [nccl_tests : Install the binaries into the release prefix]" in r.stdout
