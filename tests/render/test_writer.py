"""The manifests writer: one atomic swap, a lock, leftovers cleaned, normal modes, disk errors as one
line, and hand edits refused unless --force (render/writer.py)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

import aiinfra.render.writer as writer
from aiinfra.render.writer import (
    RECORD,
    DiskError,
    HandEdits,
    RenderBusy,
    diff_tree,
    files_on_disk,
    leftovers,
    lock_path,
    record_text,
    recover,
    with_record,
    write_tree,
)
from conftest import ROOT

OLD = {"cluster.json": '{"gpus": 16}\n', "slurm/slurm.conf": "ClusterName=old\n",
       "slurm/gres.conf": "Name=gpu\n", "jobs/a/sbatch.sh": "#!/bin/bash\necho old\n",
       "k8s/kustomization.yaml": "resources: []\n", "only-old.txt": "old\n"}
NEW = {"cluster.json": '{"gpus": 24}\n', "slurm/slurm.conf": "ClusterName=new\n",
       "slurm/gres.conf": "Name=gpu\n", "jobs/a/sbatch.sh": "#!/bin/bash\necho new\n",
       "k8s/kustomization.yaml": "resources: [a.yaml]\n", "k8s/a.yaml": "kind: X\n", "only-new/x.txt": "new\n"}


def disk(target: Path) -> dict[str, bytes]:
    return {p: f.read_bytes() for p, f in files_on_disk(target).items()}


def as_written(artifacts: dict[str, str]) -> dict[str, bytes]:
    return {p: t.encode() for p, t in with_record(artifacts).items()}


def state(target: Path) -> str | None:
    """Which complete tree ``target`` is: "old", "new", None (missing) or "BROKEN"."""
    if not os.path.lexists(target):
        return None
    on_disk = disk(target)
    return {repr(as_written(OLD)): "old", repr(as_written(NEW)): "new"}.get(repr(on_disk), "BROKEN")


def beside(target: Path) -> list[str]:
    return sorted(os.listdir(target.parent))


# ------------------------------------------------------------------ the record


def test_the_record_lists_every_rendered_file_sorted_in_sha256sum_format(tmp_path):
    target = tmp_path / "manifests" / "dev"
    write_tree(target, NEW)
    record = (target / RECORD).read_text()
    paths = [line.split("  ", 1)[1] for line in record.splitlines()]
    assert paths == sorted(NEW)
    assert record == record_text(dict(reversed(list(NEW.items()))))  # order-independent: deterministic
    if shutil.which("sha256sum"):
        out = subprocess.run(["sha256sum", "--check", "--strict", RECORD], cwd=target, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    assert diff_tree(target, NEW).clean
    (target / RECORD).unlink()
    assert diff_tree(target, NEW).added == [RECORD]  # --check compares the record too


# ------------------------------------------------------------------ modes


@pytest.mark.parametrize(("umask", "folder", "file", "script"), [
    (0o022, 0o755, 0o644, 0o755),
    (0o000, 0o755, 0o644, 0o755),  # a permissive umask never makes a writable tree
    (0o077, 0o700, 0o600, 0o700),  # a restrictive one is respected
])
def test_modes_are_normal_whatever_mkdtemp_would_give(tmp_path, umask, folder, file, script):
    target = tmp_path / "manifests" / "dev"
    old_mask = os.umask(umask)
    try:
        write_tree(target, NEW)
        write_tree(target, OLD)  # through the swap as well as the first rename
    finally:
        os.umask(old_mask)
    modes = {p.relative_to(target).as_posix(): p.stat().st_mode & 0o7777 for p in [target, *target.rglob("*")]}
    assert modes["."] == folder
    assert modes["slurm"] == modes["jobs/a"] == folder
    assert modes["slurm/slurm.conf"] == modes[RECORD] == file
    assert modes["jobs/a/sbatch.sh"] == script


# ------------------------------------------------------------------ the swap


def test_exchange_swaps_two_folders_in_one_call(tmp_path):
    if writer._RENAMEAT2 is None:
        pytest.skip("this C library has no renameat2")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f").write_text("b")
    try:
        writer._exchange(tmp_path / "a", tmp_path / "b")
    except OSError as exc:
        assert exc.errno in writer._NO_EXCHANGE
        pytest.skip(f"this filesystem cannot exchange: {exc}")
    assert (tmp_path / "a" / "f").read_text() == "b" and (tmp_path / "b" / "f").read_text() == "a"


def test_an_update_replaces_the_folder_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    assert state(target) == "old"
    result = write_tree(target, NEW)
    assert state(target) == "new"
    assert result.files == len(NEW) + 1 and result.overwritten.clean
    assert beside(target) == ["dev"]  # no staging, no retired tree, no lock file


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOSYS])
def test_without_exchange_the_fallback_still_replaces_the_tree(tmp_path, monkeypatch, code):
    def cannot(a, b):
        raise OSError(code, os.strerror(code), str(a))

    monkeypatch.setattr(writer, "_exchange", cannot)
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    write_tree(target, NEW)
    assert state(target) == "new"
    assert beside(target) == ["dev"]


def test_the_fallback_puts_the_old_tree_back_when_the_new_cannot_go_in(tmp_path, monkeypatch):
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    monkeypatch.setattr(writer, "_exchange", lambda a, b: (_ for _ in ()).throw(OSError(errno.EINVAL, "no")))
    real = os.rename

    def failing(src, dst):
        if Path(dst) == target and ".new-" in Path(src).name:
            raise OSError(errno.EIO, "Input/output error", str(src))
        return real(src, dst)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(DiskError, match="Input/output error"):
        write_tree(target, NEW)
    monkeypatch.undo()
    assert state(target) == "old"
    assert beside(target) == ["dev"]


# ------------------------------------------------------------------ killed writes

#: What a killed writer may call; the child counts a checkpoint before and after each call.
STEPS = [(os, "mkdir"), (os, "rename"), (os, "chmod"), (os, "fsync"), (os, "unlink"), (os, "rmdir"),
         (Path, "write_text"), (shutil, "rmtree"), (fcntl, "flock"), (writer, "_exchange")]


def write_killed_at(n: int, target: Path, fallback: bool) -> tuple[int, int]:
    """Fork a child that writes NEW into ``target`` and SIGKILLs itself at its ``n``-th checkpoint.

    Returns (checkpoints passed, wait status). ``n`` = 0 runs the write to its end.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            passed = 0

            def checkpoint() -> None:
                nonlocal passed
                passed += 1
                os.write(write_end, b".")
                if passed == n:
                    os.kill(os.getpid(), signal.SIGKILL)

            def wrap(real):
                def step(*args, **kwargs):
                    checkpoint()
                    result = real(*args, **kwargs)
                    checkpoint()
                    return result
                return step

            if fallback:
                def cannot(a, b):
                    raise OSError(errno.EINVAL, "Invalid argument", str(a))
                writer._exchange = cannot
            for owner, name in STEPS:
                setattr(owner, name, wrap(getattr(owner, name)))
            write_tree(target, NEW)
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(3)
    os.close(write_end)
    passed = 0
    while chunk := os.read(read_end, 4096):
        passed += len(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return passed, status


@pytest.mark.parametrize("fallback", [False, True], ids=["exchange", "fallback"])
def test_a_write_killed_at_any_step_leaves_a_whole_tree(tmp_path, fallback):
    if not fallback and writer._RENAMEAT2 is None:
        pytest.skip("this C library has no renameat2")
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    total, status = write_killed_at(0, target, fallback)
    assert os.waitstatus_to_exitcode(status) == 0 and state(target) == "new"
    assert total > 40  # the write has many steps: each one is a kill point below
    seen: dict[str | None, int] = {}
    for n in range(1, total + 1):
        write_tree(target, OLD)
        passed, status = write_killed_at(n, target, fallback)
        assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL, f"kill point {n}"
        assert passed == n
        now = state(target)
        seen[now] = seen.get(now, 0) + 1
        if fallback and now is None:
            # killed between the fallback's two renames: the whole old tree waits beside it
            retired = leftovers(target)["old"]
            assert len(retired) == 1 and disk(retired[0]) == as_written(OLD), f"kill point {n}"
        else:
            assert now in ("old", "new"), f"kill point {n}: {now}"
        recover(target)  # what the next write does first
        assert state(target) in ("old", "new"), f"kill point {n}"
        assert beside(target) == ["dev"], f"kill point {n}"
    assert seen.get("old") and seen.get("new")  # the kills fell on both sides of the swap
    if fallback:
        assert seen.get(None)  # and inside the fallback's window, which recover() closes
    else:
        assert None not in seen  # with the exchange the tree is never missing


def test_writes_killed_at_random_times_leave_a_whole_tree(tmp_path):
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    rng = random.Random(1234)
    for _ in range(25):
        pid = os.fork()
        if pid == 0:
            try:
                while True:
                    write_tree(target, NEW)
                    write_tree(target, OLD)
            finally:
                os._exit(3)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert state(target) in ("old", "new")
    write_tree(target, NEW)  # after all that, no --force needed and nothing left over
    assert state(target) == "new" and beside(target) == ["dev"]


def test_a_reader_never_finds_the_tree_missing_while_it_is_replaced(tmp_path):
    if writer._RENAMEAT2 is None:
        pytest.skip("this C library has no renameat2")
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    pid = os.fork()
    if pid == 0:
        try:
            for i in range(60):
                write_tree(target, NEW if i % 2 else OLD)
            os._exit(0)
        finally:
            os._exit(3)
    missing = reads = 0
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        reads += 1
        missing += not (target / RECORD).is_file()
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert reads > 100 and missing == 0


# ------------------------------------------------------------------ the lock


def test_a_second_writer_waits_for_the_lock_then_writes(tmp_path):
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    fd = os.open(lock_path(target), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another render holds it

    def release():
        time.sleep(0.5)
        os.unlink(lock_path(target))  # as a holder does: remove, then unlock
        os.close(fd)

    threading.Thread(target=release).start()
    started = time.monotonic()
    write_tree(target, NEW, lock_timeout_s=10)
    assert time.monotonic() - started >= 0.4
    assert state(target) == "new" and beside(target) == ["dev"]


def test_a_lock_held_too_long_is_one_line_and_nothing_written(tmp_path):
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    fd = os.open(lock_path(target), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(RenderBusy) as caught:
            write_tree(target, NEW, lock_timeout_s=0.3)
    finally:
        os.close(fd)
    assert "another render is writing" in str(caught.value) and "\n" not in str(caught.value)
    assert state(target) == "old"


def test_writers_racing_end_cleanly_with_one_whole_tree(tmp_path):
    target = tmp_path / "manifests" / "dev"
    trees = [OLD, NEW, {**NEW, "cluster.json": '{"gpus": 32}\n'}, {"only.txt": "one\n"}]
    pids = []
    for tree in trees:
        pid = os.fork()
        if pid == 0:
            try:
                for _ in range(8):
                    write_tree(target, tree)
                os._exit(0)
            except BaseException:
                traceback.print_exc()
                os._exit(3)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    assert codes == [0, 0, 0, 0]
    assert disk(target) in [as_written(t) for t in trees]
    assert beside(target) == ["dev"]


@pytest.fixture
def project(tmp_path):
    """A project root the CLI may write manifests/ into (the real manifests/ stay untouched)."""
    for name in ("Pulumi.yaml", "stacks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def cli(root: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, AIINFRA_ROOT=str(root), COLUMNS="200")
    return subprocess.Popen([sys.executable, "-m", "aiinfra.cli", *args], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_renders_at_once_both_succeed(project):
    runs = [cli(project, "render", "--stack", "dev") for _ in range(2)]
    results = [(p.wait(timeout=240), *p.communicate()) for p in runs]
    for code, stdout, stderr in results:
        assert code == 0, stderr
        assert "Traceback" not in stderr and "wrote" in stdout
    check = cli(project, "render", "--stack", "dev", "--check")
    assert check.wait(timeout=240) == 0, check.communicate()
    assert beside(project / "manifests" / "dev") == ["dev"]


# ------------------------------------------------------------------ leftovers


def test_stale_leftovers_are_removed_and_a_repeated_pid_is_no_problem(tmp_path):
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    junk = [f".dev.old-{os.getpid()}", ".dev.new-ab_cd123", ".dev.new-0123456789ab", ".dev.old-0123456789ab"]
    for name in junk:
        (target.parent / name / "sub").mkdir(parents=True)
        (target.parent / name / "sub" / "f").write_text("junk")
    lock_path(target).write_text("")  # a killed holder's lock file
    others = [".prod.new-0123456789ab", ".dev.new-x.new-0123456789ab", ".dev.keep"]  # not this tree's
    for name in others:
        (target.parent / name).mkdir()
    write_tree(target, NEW)
    assert state(target) == "new"
    assert beside(target) == sorted(["dev", *others])


def test_a_retired_tree_comes_back_when_the_target_is_missing(tmp_path):
    """The old writer's window: killed after renaming the tree away, before renaming the new one in."""
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    os.rename(target, target.parent / ".dev.old-4242")
    (target.parent / ".dev.new-abcdefgh").mkdir()  # the half-written staging of that run
    recover(target)
    assert state(target) == "old" and beside(target) == ["dev"]
    (target / "cluster.json").write_text("edited\n")
    os.rename(target, target.parent / ".dev.old-4243")
    with pytest.raises(HandEdits, match="edited: cluster.json"):  # the restored tree is protected too
        write_tree(target, NEW)
    assert (target / "cluster.json").read_text() == "edited\n"


# ------------------------------------------------------------------ disk errors


def test_a_full_disk_is_one_line_and_the_old_tree_stays(tmp_path, monkeypatch):
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    calls = {"n": 0}
    real = Path.write_text

    def full(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiskError) as caught:
        write_tree(target, NEW)
    monkeypatch.undo()
    message = str(caught.value)
    assert "\n" not in message and "No space left on device" in message and ".dev.new-" in message
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert state(target) == "old" and beside(target) == ["dev"]


def test_the_cli_reports_a_write_error_in_one_line(aiinfra, project, monkeypatch):
    assert aiinfra("render", "--stack", "dev", cwd=project).code == 0
    before = disk(project / "manifests" / "dev")
    real = Path.write_text

    def full(self, *args, **kwargs):
        if ".dev.new-" in str(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    r = aiinfra("render", "--stack", "dev", "--force", cwd=project)
    monkeypatch.undo()
    assert r.code == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write manifests/dev: No space left on device")
    assert disk(project / "manifests" / "dev") == before


REAL_DISK = r'''
import json, os, subprocess, sys
from pathlib import Path
from aiinfra.render.writer import DiskError, files_on_disk, write_tree

root = Path(sys.argv[1])
target = root / "manifests" / "dev"
old = {"a.txt": "old\n", "b/c.txt": "old\n"}
write_tree(target, old)
out = {}
try:
    write_tree(target, {f"f{i:02d}.txt": "x" * 8191 + "\n" for i in range(64)})  # 512 KiB > 256 KiB
except DiskError as exc:
    out["enospc"] = [exc.errno, str(exc)]
out["after_enospc"] = {p: f.read_text() for p, f in files_on_disk(target).items()}
out["beside_after_enospc"] = sorted(os.listdir(target.parent))
subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
try:
    write_tree(target, {"a.txt": "new\n"})
except DiskError as exc:
    out["erofs"] = [exc.errno, str(exc)]
out["after_erofs"] = {p: f.read_text() for p, f in files_on_disk(target).items()}
print(json.dumps(out))
'''


def test_a_real_full_disk_and_a_real_read_only_disk(tmp_path):
    """On a 256 KiB tmpfs of a private mount namespace (no root needed where user namespaces work)."""
    unshare = shutil.which("unshare")
    probe = [unshare, "--user", "--map-root-user", "--mount", "true"] if unshare else None
    if probe is None or subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("unshare --user --mount is not available here (no user namespaces)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "disk.py"
    script.write_text(REAL_DISK)
    out = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
         'mount -t tmpfs -o size=256k tmpfs "$0" && exec "$1" "$2" "$0"', str(mnt), sys.executable, str(script)],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    old = {"a.txt": "old\n", "b/c.txt": "old\n", RECORD: record_text({"a.txt": "old\n", "b/c.txt": "old\n"})}
    code, message = got["enospc"]
    assert code == errno.ENOSPC and "No space left on device" in message and "\n" not in message
    assert got["after_enospc"] == old and got["beside_after_enospc"] == ["dev"]
    code, message = got["erofs"]
    assert code == errno.EROFS and "Read-only file system" in message and "\n" not in message
    assert got["after_erofs"] == old


NO_PERMISSION = r'''
import json, sys
from pathlib import Path
from aiinfra.render.writer import DiskError, write_tree

try:
    write_tree(Path(sys.argv[1]), {"a.txt": "new\n"})
    print(json.dumps(None))
except DiskError as exc:
    print(json.dumps([exc.errno, str(exc)]))
'''


def test_a_folder_without_write_permission_is_one_line(tmp_path):
    """Root ignores permission bits: as root, the write runs in a user namespace without a uid map,
    where root's files get their owner bits checked and no capability overrides them."""
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    script = tmp_path / "perm.py"
    script.write_text(NO_PERMISSION)
    command = [sys.executable, str(script), str(target)]
    if os.geteuid() == 0:
        unshare = shutil.which("unshare")
        if not unshare or subprocess.run([unshare, "--user", "true"], capture_output=True).returncode != 0:
            pytest.skip("running as root without user namespaces: permission bits cannot refuse a write")
        command = [unshare, "--user", *command]
    target.parent.chmod(0o555)
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        target.parent.chmod(0o755)
    assert out.returncode == 0, out.stderr
    code, message = json.loads(out.stdout)
    assert code == errno.EACCES and "Permission denied" in message and "\n" not in message
    assert state(target) == "old" and beside(target) == ["dev"]


# ------------------------------------------------------------------ hand edits


def test_files_the_last_render_wrote_are_replaced_freely(tmp_path):
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    (target / "only-new").mkdir()
    (target / "only-new" / "x.txt").write_text(NEW["only-new/x.txt"])  # untracked, but what NEW writes
    (target / "cluster.json").write_text(NEW["cluster.json"])  # edited, but to what NEW writes
    (target / "slurm" / "gres.conf").unlink()  # deleted by hand: written again, nothing is lost
    assert write_tree(target, NEW).overwritten.clean
    assert state(target) == "new"


def test_a_hand_edit_and_an_untracked_file_are_refused_by_name(tmp_path):
    target = tmp_path / "manifests" / "dev"
    write_tree(target, OLD)
    (target / "slurm" / "slurm.conf").write_text("ClusterName=mine\n")
    (target / "k8s" / "extra.yaml").write_text("kind: Mine\n")
    os.symlink("cluster.json", target / "link")
    before = disk(target)
    with pytest.raises(HandEdits) as caught:
        write_tree(target, NEW)
    message = str(caught.value)
    assert "edited: slurm/slurm.conf" in message
    assert "untracked: k8s/extra.yaml" in message and "untracked: link" in message
    assert "--force" in message and "only-old.txt" not in message
    assert disk(target) == before and beside(target) == ["dev"]
    result = write_tree(target, NEW, force=True)
    assert result.overwritten.edited == ["slurm/slurm.conf"]
    assert result.overwritten.untracked == ["k8s/extra.yaml", "link"]
    assert state(target) == "new"


def test_a_tree_without_a_record_needs_force_only_where_it_differs(tmp_path):
    target = tmp_path / "manifests" / "dev"
    write_tree(target, NEW)
    (target / RECORD).unlink()  # a tree of an older aiinfra
    write_tree(target, NEW)  # up to date: it just gains its record
    assert state(target) == "new"
    (target / RECORD).unlink()
    with pytest.raises(HandEdits) as caught:
        write_tree(target, OLD)
    message = str(caught.value)
    assert "no render record" in message
    assert "edited: cluster.json" in message and "untracked: only-new/x.txt" in message
    assert "slurm/gres.conf" not in message  # the same in both renders
    write_tree(target, OLD, force=True)
    assert state(target) == "old"


def test_the_cli_refuses_hand_edits_and_force_overwrites_them(aiinfra, project):
    target = project / "manifests" / "dev"
    r = aiinfra("render", "--stack", "dev", cwd=project)
    assert r.code == 0, r.stderr
    assert (target / RECORD).is_file()
    assert aiinfra("render", "--stack", "dev", "--check", cwd=project).code == 0
    assert aiinfra("render", "--stack", "dev", cwd=project).code == 0  # a re-render needs no --force
    rendered = (target / "cluster.json").read_text()
    (target / "cluster.json").write_text(rendered.replace('"gpus": 16', '"gpus": 17'))
    (target / "stray.yaml").write_text("x: 1\n")
    r = aiinfra("render", "--stack", "dev", cwd=project)
    assert r.code == 1
    assert "Traceback" not in r.stderr
    assert "edited: cluster.json" in r.stderr and "untracked: stray.yaml" in r.stderr and "--force" in r.stderr
    assert (target / "cluster.json").read_text() != rendered and (target / "stray.yaml").exists()
    assert aiinfra("render", "--stack", "dev", "--check", "--force", cwd=project).code == 2
    r = aiinfra("render", "--stack", "dev", "--force", cwd=project)
    assert r.code == 0, r.stderr
    assert "cluster.json" in r.stderr and "stray.yaml" in r.stderr  # says what --force replaced
    assert (target / "cluster.json").read_text() == rendered and not (target / "stray.yaml").exists()
    assert aiinfra("render", "--stack", "dev", "--check", cwd=project).code == 0
