"""A test host made on this machine: a Debian bookworm tree (debootstrap) used through chroot.

The base tree is built once and cached (``$AIINFRA_TEST_CACHE``, default
/var/cache/aiinfra-tests): CI pays ~80-160 s once; later runs mount an overlay over it (or copy
it). Each test session gets its own tree, so converges never touch the cache or the machine. Daemons never start inside: a
policy-rc.d forbids it, and no /proc, /sys or /run of the machine is mounted in.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("AIINFRA_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What the roles install on Debian when their vendor repositories are skipped (tags nvidia_repo,
# lustre_repo): included up front so a converge needs no download.
PACKAGES = ("python3", "python3-apt", "chrony", "nvme-cli", "rdma-core", "ibverbs-utils", "infiniband-diags",
            "opensm", "kmod", "systemd")
REQUIRED_BINARIES = ("debootstrap", "chroot")


def cache_dir() -> Path:
    return Path(os.environ.get("AIINFRA_TEST_CACHE", "/var/cache/aiinfra-tests"))


def missing_tools() -> list[str]:
    return [b for b in REQUIRED_BINARIES if shutil.which(b) is None]


def chroot_test_marks() -> list:
    """The marks of a module whose tests run roles on the chroot test host: slow, root, tools."""
    import pytest

    return [
        pytest.mark.slow,
        pytest.mark.skipif(os.geteuid() != 0, reason="needs root (debootstrap, chroot)"),
        pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {', '.join(missing_tools())}"),
    ]


def base_tree(timeout_s: float = 600) -> Path:
    """The cached base tree, built on first use (one builder at a time; others wait)."""
    key = hashlib.sha256(f"{SUITE} {MIRROR} {' '.join(PACKAGES)} v1".encode()).hexdigest()[:12]
    root = cache_dir() / f"debootstrap-{SUITE}-{key}"
    done = root / ".aiinfra-complete"
    if done.exists():
        return root
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return root
        work = root.with_name(root.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(work), MIRROR],
            check=True, capture_output=True, text=True, timeout=timeout_s,
        )
        policy = work / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# aiinfra test tree: never start a daemon\nexit 101\n")
        policy.chmod(0o755)
        subprocess.run(["chroot", str(work), "apt-get", "clean"], check=True, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
        work.rename(root)
        done.write_text("ok\n")
    return root


@contextmanager
def host_tree(workdir: Path) -> Iterator[Path]:
    """A private, writable host tree over the cached base: an overlay mount (instant; the cache stays
    untouched) or, where overlayfs is not allowed, a copy. Removed on exit."""
    base = base_tree()
    root, upper, work = workdir / "root", workdir / "upper", workdir / "work"
    for d in (root, upper, work):
        d.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={base},upperdir={upper},workdir={work}", str(root)],
        capture_output=True, timeout=30).returncode == 0
    if not mounted:
        subprocess.run(["cp", "-a", f"{base}/.", str(root)], check=True, timeout=300)
    try:
        yield root
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(root)], capture_output=True, timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def install_fake(root: Path, name: str, script: str) -> Path:
    """Put an executable (a fake nvidia-smi, ibstat, lfs ...) on the tree's PATH (/usr/local/bin)."""
    path = root / "usr/local/bin" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    path.chmod(0o755)
    return path
