"""A test bed of several "hosts" on one machine: network namespaces with their own address and
hostname, each with a key-only sshd, joined by a bridge to the root namespace (where Ansible runs).

The hosts share this machine's file system; the roles are written so that works (per-node paths
with %n, one munged serving every namespace). Everything is bounded by deadlines and undone by
:meth:`Testbed.down`, which is safe to call after a partial :meth:`Testbed.up`.

Needs root, ``ip``, ``unshare``, ``sshd`` and ``ssh-keygen``. Used by tests/slurm/ and
benchmarks/ansible_fanout.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_BINARIES = ("ip", "nsenter", "unshare", "ssh", "ssh-keygen", "/usr/sbin/sshd")
BRIDGE = "aitb0"
NS_PREFIX = "aitb-"
# One test bed at a time on a machine: the names, bridge and addresses are fixed. A second one
# (a test run beside the benchmark) waits for the lock, up to LOCK_WAIT_S.
LOCK_FILE = "/run/aiinfra-testbed.lock"
LOCK_WAIT_S = 900


def missing_binaries(names: tuple[str, ...] | list[str]) -> list[str]:
    return [n for n in names if not (os.access(n, os.X_OK) if n.startswith("/") else shutil.which(n))]


def run(cmd: list[str], timeout: float = 30, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, timeout=timeout, check=check, capture_output=True, text=True, **kw)


def wait_until(what: str, predicate, deadline_s: float, interval_s: float = 0.2):
    """Poll ``predicate`` until it returns a truthy value or the deadline passes (then raise)."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise TimeoutError(f"{what}: not reached within {deadline_s:.0f} s (last: {last!r})")


@dataclass
class Host:
    name: str
    address: str

    @property
    def netns(self) -> str:
        return f"{NS_PREFIX}{self.name}"

    @property
    def veth(self) -> str:
        return f"v{NS_PREFIX}{self.name}"[:15]


@dataclass
class Testbed:
    __test__ = False  # not a pytest test class
    hosts: list[Host]
    workdir: Path
    gateway: str  # the bridge's address in the root namespace, e.g. 10.77.0.1/24
    _made: list[str] = field(default_factory=list)
    _hosts_backup: str | None = None
    _lock: object = None

    @property
    def key(self) -> Path:
        return self.workdir / "id_ed25519"

    def exec_in(self, host: Host, cmd: list[str], timeout: float = 30, check: bool = True):
        """Run a command inside a host's namespaces (network and its hostname)."""
        return run(["nsenter", f"--net=/run/netns/{host.netns}", "unshare", "--uts", "sh", "-c",
                    f'hostname {host.name} && exec "$@"', "sh", *cmd], timeout=timeout, check=check)

    def ssh(self, host: Host, command: str, timeout: float = 60, check: bool = True):
        return run(["ssh", *self.ssh_options(), f"root@{host.address}", command], timeout=timeout, check=check)

    def ssh_options(self) -> list[str]:
        return ["-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]

    # ------------------------------------------------------------------ up

    def _acquire(self) -> None:
        self._lock = open(LOCK_FILE, "w")  # noqa: SIM115 - held until down()

        def take() -> bool:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        wait_until(f"the test-bed lock {LOCK_FILE} (another test bed runs)", take, LOCK_WAIT_S, 1)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def up(self) -> None:
        self._acquire()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._hosts_backup = Path("/etc/hosts").read_text()
        self.down(quiet=True)  # leftovers of an interrupted run
        if not self.key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)])
        hostkey = self.workdir / "ssh_host_ed25519_key"
        if not hostkey.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey)])
        (self.workdir / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        self._made.append(f"link:{BRIDGE}")
        run(["ip", "addr", "add", self.gateway, "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        prefix = self.gateway.split("/")[1]
        for host in self.hosts:
            run(["ip", "netns", "add", host.netns])
            self._made.append(f"netns:{host.netns}")
            run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns])
            self._made.append(f"link:{host.veth}")
            run(["ip", "link", "set", host.veth, "master", BRIDGE, "up"])
            ns = ["ip", "netns", "exec", host.netns]
            run([*ns, "ip", "addr", "add", f"{host.address}/{prefix}", "dev", "eth0"])
            run([*ns, "ip", "link", "set", "eth0", "up"])
            run([*ns, "ip", "link", "set", "lo", "up"])
            # no default route on purpose: DNS would hang inside the namespace
            config = self.workdir / f"sshd-{host.name}.conf"
            config.write_text(
                f"ListenAddress {host.address}\nPort 22\nHostKey {hostkey}\n"
                f"AuthorizedKeysFile {self.workdir}/authorized_keys\nPermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                f"PidFile {self.workdir}/sshd-{host.name}.pid\nUseDNS no\nMaxStartups 100\nMaxSessions 100\n"
                "AcceptEnv LANG LC_*\nSubsystem sftp internal-sftp\n"
            )
            self.exec_in(host, ["/usr/sbin/sshd", "-f", str(config)])
        for host in self.hosts:
            wait_until(f"sshd of {host.name}", lambda h=host: self._port_open(h.address, 22), 15)
            out = wait_until(f"ssh to {host.name}", lambda h=host: self._hostname(h), 20, 0.5)
            if out != host.name:
                raise RuntimeError(f"{host.address} answers as '{out}', expected '{host.name}'")

    def _port_open(self, address: str, port: int) -> bool:
        try:
            with socket.create_connection((address, port), timeout=1):
                return True
        except OSError:
            return False

    def _hostname(self, host: Host) -> str | None:
        r = self.ssh(host, "hostname -s", timeout=10, check=False)
        return r.stdout.strip() if r.returncode == 0 else None

    # ------------------------------------------------------------------ down

    def pids(self, host: Host) -> list[int]:
        r = run(["ip", "netns", "pids", host.netns], check=False, timeout=10)
        return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []

    def kill_host(self, host: Host, deadline_s: float = 10) -> None:
        """SIGTERM everything in the host's namespace, SIGKILL what is left at the deadline."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.pids(host):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            try:
                wait_until(f"processes of {host.name} to end", lambda h=host: not self.pids(h),
                           deadline_s if sig == signal.SIGTERM else 5)
                return
            except TimeoutError:
                continue

    def down(self, quiet: bool = False, compute_first: list[str] | None = None) -> None:
        """Stop every process of every namespace (compute nodes first), delete links and namespaces.

        Only the holder of the test-bed lock tears down: a bed that never got it leaves the other alone.
        """
        if self._lock is None:
            return
        existing = set(run(["ip", "netns", "list"], check=False).stdout.split())
        order = sorted(self.hosts, key=lambda h: 0 if compute_first and h.name in compute_first else 1)
        for host in order:
            if host.netns in existing:
                self.kill_host(host)
        for host in self.hosts:
            run(["ip", "link", "del", host.veth], check=False)
            if host.netns in existing:
                run(["ip", "netns", "del", host.netns], check=False)
        run(["ip", "link", "del", BRIDGE], check=False)
        if self._hosts_backup is not None and not quiet:
            Path("/etc/hosts").write_text(self._hosts_backup)
        self._made.clear()
        if not quiet:
            self._release()
