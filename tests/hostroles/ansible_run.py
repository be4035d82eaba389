"""Run ansible-playbook for the host-role tests: project ansible.cfg, the test connection plugin,
no fact cache on disk."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
PLUGINS = Path(__file__).resolve().parent / "plugins" / "connection"


def ansible_playbook() -> str:
    local = BIN / "ansible-playbook"
    return str(local) if local.exists() else "ansible-playbook"


@dataclass
class PlayResult:
    """What ansible-playbook printed (default callback), read back: the recap and the changed tasks."""

    rc: int
    stdout: str
    stderr: str

    def stats(self, host: str) -> dict[str, int]:
        m = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", self.stdout, flags=re.M)
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))} if m else {}

    def changed_tasks(self, host: str) -> list[str]:
        changed, task = [], None
        for line in self.stdout.splitlines():
            m = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\]", line)
            if m:
                task = m.group(1)
            elif line.startswith(f"changed: [{host}]") and task not in changed:
                changed.append(task)
        return changed

    def tail(self, chars: int = 4000) -> str:
        return (self.stdout + self.stderr)[-chars:]


def run_playbook(playbook: Path, inventory: Path, *args: str, timeout_s: float = 600) -> PlayResult:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_CONNECTION_PLUGINS": str(PLUGINS),
        "ANSIBLE_CACHE_PLUGIN": "memory",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    })
    proc = subprocess.run([ansible_playbook(), "-i", str(inventory), str(playbook), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    return PlayResult(proc.returncode, proc.stdout, proc.stderr)
