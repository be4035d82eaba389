"""The accounting password with quotes, backslashes, '#' and spaces: the slurm role writes it into
MariaDB (SQL on stdin) and slurmdbd.conf (StoragePass) so that both read the same password back,
and refuses, with a message that does not show it, what slurmdbd.conf cannot carry.

The real part runs the role's own task files (validate.yml, dbd_config.yml, dbd.yml) with Ansible
against Debian's MariaDB and slurmdbd 22.05, started by the role by hand in a network namespace of
their own (ports 3306 and 6819 stay free for anything else on the machine); slurmdbd connecting as
the accounting user is the proof that it read the password the SQL set.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from hostroles.ansible_run import PlayResult

sys.path.insert(0, str(ROOT / "roles" / "slurm" / "filter_plugins"))
import contextlib

from aiinfra_secrets import (  # noqa: E402
    aiinfra_mariadb_string,
    aiinfra_slurm_conf_problem,
    aiinfra_slurm_conf_value,
)

BIN = Path(sys.executable).parent
# Quotes, backslashes (one at the end), '#' and spaces; the second adds a '"' (then no whitespace).
SPACED = "it's a #1 \\ pass \\"
QUOTED = "it's\"#1\\pa'ss\\"
UNCARRIABLE = 'say "hello world"'


# ------------------------------------------------------------------ the encodings


def slurm_reads(line: str) -> str | None:
    """The value of a ``key=value`` line as Slurm's parser reads it (src/common/parse_config.c:
    _strip_comments, _strip_escapes, keyvalue_pattern), or None when it finds none."""
    import re

    bs = 0
    for i, c in enumerate(line):
        if c == "#" and bs % 2 == 0:
            line = line[:i]
            break
        bs = bs + 1 if c == "\\" else 0
    out, i = [], 0
    while i < len(line):
        if line[i] == "\\":
            i += 1
        if i < len(line):
            out.append(line[i])
        i += 1
    m = re.match(r'^\s*([\w.]+)\s*([-*+/]?)=\s*(("([^"]*)")|([^\s]+))(\s|$)', "".join(out))
    if not m:
        return None
    return m.group(5) if m.group(5) is not None else m.group(6)


def test_slurm_conf_value_reads_back():
    rng = random.Random(7)
    alphabet = "ab \t'\"\\#=%$`;{}"
    samples = [SPACED, QUOTED, "plain", "#", "\\", "\\#", "a\\", "x\"y", "ends with space ", " lead"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(3000)]
    carried = 0
    for pw in samples:
        if aiinfra_slurm_conf_problem(pw):
            assert '"' in pw and (pw.startswith('"') or any(c.isspace() for c in pw)), pw
            continue
        carried += 1
        assert slurm_reads(f"StoragePass={aiinfra_slurm_conf_value(pw)}\n") == pw, pw
    assert carried > 1500


def test_what_slurmdbd_conf_cannot_carry_is_refused():
    for pw in (UNCARRIABLE, '"starts', "two\nlines", "cr\r", "nul\0", "x" * 5000):
        assert aiinfra_slurm_conf_problem(pw), pw
    assert "double quote" in aiinfra_slurm_conf_problem(UNCARRIABLE)
    assert UNCARRIABLE not in aiinfra_slurm_conf_problem(UNCARRIABLE)
    assert aiinfra_slurm_conf_problem(SPACED) == aiinfra_slurm_conf_problem(QUOTED) == ""


def test_mariadb_string():
    assert aiinfra_mariadb_string(SPACED) == "'it''s a #1 \\\\ pass \\\\'"
    assert aiinfra_mariadb_string('a"b') == "'a\"b'"


# ------------------------------------------------------------------ the role, for real

ROLE_PLAY = [{"name": "Accounting password", "hosts": "slurmdbd", "gather_facts": False, "tasks": [
    {"name": "Validate", "ansible.builtin.import_role": {"name": "slurm", "tasks_from": "validate.yml"}},
    {"name": "Configure", "ansible.builtin.import_role": {"name": "slurm", "tasks_from": "dbd_config.yml"}},
    {"name": "Run", "ansible.builtin.import_role": {"name": "slurm", "tasks_from": "dbd.yml"}}]}]
VALIDATE_PLAY = [{**ROLE_PLAY[0], "tasks": ROLE_PLAY[0]["tasks"][:1]}]


def _layout(work: Path) -> dict:
    """Inventory variables that point the role at files, daemons and a database under ``work``."""
    manifests, etc = work / "manifests", work / "etc"
    manifests.mkdir(parents=True, exist_ok=True)
    etc.mkdir(exist_ok=True)
    (manifests / "slurm.conf").write_text("# only looked for by validate.yml\n")
    (manifests / "slurmdbd.conf").write_text("\n".join([
        "# slurmdbd.conf of the password test (the role appends StoragePass)",
        "AuthType=auth/munge",
        f"DbdHost={socket.gethostname().split('.')[0]}",
        "SlurmUser=root",
        f"LogFile={work}/slurmdbd.log",
        f"PidFile={work}/slurmdbd.pid",
        "StorageType=accounting_storage/mysql",
        "StorageHost=127.0.0.1",  # TCP inside the namespace; MariaDB resolves it to 'localhost'
        "StoragePort=3306",
        "StorageLoc=slurm_acct_db",
        "StorageUser=slurm",
    ]))
    # mysql and mysqladmin (run by the role as root) find this MariaDB's socket through ~/.my.cnf.
    (work / ".my.cnf").write_text(f"[client]\nsocket={work}/mysqld.sock\n")
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "slurm_manifests_dir": str(manifests),
        "slurm_service_manager": "direct",
        "slurm_start_timeout_s": 60,
        "slurm_mariadb_direct_command": (
            f"/usr/sbin/mariadbd --defaults-file={work}/aiinfra-slurmdbd.cnf --user=root --datadir={work}/data "
            f"--socket={work}/mysqld.sock "
            f"--pid-file={work}/mysqld.pid --log-error={work}/mysqld.err --port=3306 "
            "--bind-address=127.0.0.1"),
        # the role's settings file, the only one this MariaDB reads
        "slurm_mariadb_config_file": f"{work}/aiinfra-slurmdbd.cnf",
        # Debian's slurmdbd, from its package paths
        "aiinfra_slurm_install": {"method": "packages", "version": "22.05"},
        "aiinfra_slurm_cluster_name": "pwtest",
        "aiinfra_slurm_accounting": {"cluster": "pwtest", "qos": []},
        "aiinfra_slurm_config_dir": str(etc),
        "aiinfra_slurm_user": "root",
        "aiinfra_slurm_db_name": "slurm_acct_db",
        "aiinfra_slurm_db_user": "slurm",
        "aiinfra_slurm_dbd_pid_file": f"{work}/slurmdbd.pid",
    }


def _play(work: Path, play: list, password: str, netns: str | None = None) -> subprocess.CompletedProcess:
    inventory = {"all": {"hosts": {"dbd01": None}, "vars": _layout(work),
                         "children": {"slurmdbd": {"hosts": {"dbd01": None}},
                                      "slurm_controller": {"hosts": {"dbd01": None}}}}}
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (work / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    secrets = work / "secrets.yml"
    secrets.write_text(yaml.safe_dump({"slurm_dbd_storage_pass": password}))
    secrets.chmod(0o600)
    env = dict(os.environ, HOME=str(work), SLURM_CONF=f"{work}/etc/slurm.conf",
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_LOCAL_TEMP=str(work / "tmp"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="False")
    cmd = [str(BIN / "ansible-playbook"), "-i", str(work / "inventory.yml"), str(work / "play.yml"),
           "-e", f"@{secrets}"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)


def test_validate_refuses_what_slurmdbd_conf_cannot_carry_without_showing_it(tmp_path):
    r = _play(tmp_path, VALIDATE_PLAY, UNCARRIABLE)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out[-3000:]
    assert "slurm_dbd_storage_pass cannot be written into slurmdbd.conf" in out and "double quote" in out, out
    assert "hello world" not in out
    ok = _play(tmp_path, VALIDATE_PLAY, QUOTED)
    assert ok.returncode == 0, (ok.stdout + ok.stderr)[-3000:]


def _requirements() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespace, MariaDB)"
    for tool in ("ip", "mysql", "mariadb-install-db", "/usr/sbin/mariadbd", "/usr/sbin/slurmdbd"):
        if not shutil.which(tool):
            return f"{tool} not found (apt-get install slurmdbd mariadb-server iproute2)"
    return None


def _sql(netns: str, work: Path, query: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", netns, "mysql", "-NB", "-e", query],
                         env=dict(os.environ, HOME=str(work)), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _netns_pids(netns: str) -> list[str]:
    return subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _connected_as_slurm(netns: str, work: Path, pid: int | None, timeout_s: float = 60) -> bool:
    """slurmdbd (pid) runs and holds a MariaDB session as the accounting user."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = pid is not None and Path(f"/proc/{pid}").exists()
        sessions = _sql(netns, work,
                        "SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'slurm'")
        if alive and int(sessions.strip() or 0) > 0:
            return True
        time.sleep(0.5)
    return False


@pytest.mark.slow
def test_mariadb_and_slurmdbd_read_the_same_password(tmp_path_factory):
    reason = _requirements()
    if reason:
        pytest.skip(f"real MariaDB and slurmdbd: {reason}")
    work = tmp_path_factory.mktemp("dbd-password")
    netns = f"aiinfra-pw-{uuid.uuid4().hex[:8]}"
    init = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={work}/data", "--user=root",
                           "--auth-root-authentication-method=socket"],
                          capture_output=True, text=True, timeout=180)
    assert init.returncode == 0, init.stdout + init.stderr
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        # lo, and a veth pair with an IPv4 address: slurmdbd resolves its listening address with
        # AI_ADDRCONFIG, which finds no address family on loopback alone.
        subprocess.run(["ip", "netns", "exec", netns, "sh", "-ec",
                        "ip link set lo up; ip link add aiinfra0 type veth peer name aiinfra1;"
                        "ip addr add 10.254.0.1/30 dev aiinfra0; ip link set aiinfra0 up; ip link set aiinfra1 up"],
                       check=True)

        first = _play(work, ROLE_PLAY, SPACED, netns)
        out = first.stdout + first.stderr
        assert first.returncode == 0, out[-4000:]
        assert SPACED not in out and "pass \\" not in out
        conf = (work / "etc" / "slurmdbd.conf").read_text()
        assert conf.endswith('StoragePass="it\'s a \\#1 \\\\ pass \\\\"\n')
        assert oct((work / "etc" / "slurmdbd.conf").stat().st_mode & 0o777) == "0o600"
        pid = _pid(work / "slurmdbd.pid")
        assert _connected_as_slurm(netns, work, pid), (work / "slurmdbd.log").read_text()[-3000:]
        assert "cluster_table" in _sql(netns, work, "SHOW TABLES FROM slurm_acct_db")

        # A new password with a '"': the role sets it in MariaDB, rewrites slurmdbd.conf and restarts
        # slurmdbd.
        second = _play(work, ROLE_PLAY, QUOTED, netns)
        assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
        changed = PlayResult(second.returncode, second.stdout, second.stderr).changed_tasks("dbd01")
        assert "slurm : Create the accounting database and its user, or set the password" in changed, changed
        assert "slurm : Install the accounting configuration with its password" in changed
        assert "slurm : Restart slurmdbd by hand" in changed
        assert QUOTED not in second.stdout + second.stderr
        new_pid = _pid(work / "slurmdbd.pid")
        assert new_pid != pid
        assert _connected_as_slurm(netns, work, new_pid), (work / "slurmdbd.log").read_text()[-3000:]
        assert "Access denied" not in (work / "slurmdbd.log").read_text()

        # The same password again: the SQL's check finds it set, nothing changes.
        third = _play(work, ROLE_PLAY, QUOTED, netns)
        assert third.returncode == 0, (third.stdout + third.stderr)[-4000:]
        assert PlayResult(0, third.stdout, "").stats("dbd01")["changed"] == 0, third.stdout[-3000:]
        assert _pid(work / "slurmdbd.pid") == new_pid
    finally:
        for pidfile in ("slurmdbd.pid", "mysqld.pid"):
            pid = _pid(work / pidfile)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not _netns_pids(netns):
                break
            time.sleep(0.5)
        for pid in _netns_pids(netns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", netns], check=False)
