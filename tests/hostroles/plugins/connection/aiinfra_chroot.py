"""Ansible connection plugin of the host-role tests: run tasks inside a chroot directory.

The inventory host's ``ansible_host`` is the directory. Commands run as ``chroot DIR /bin/sh -c``
with a fixed environment; files are copied in and out through the directory. Nothing reaches the
machine outside the tree, except what a command run inside could do anyway as root (the tests
mount nothing into it: no /proc, /sys or /run of the host).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ansible.errors import AnsibleError
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
name: aiinfra_chroot
short_description: Run tasks inside a chroot directory (aiinfra host-role tests)
description:
  - Runs commands with chroot(8) inside the directory given as the host's address.
author: aiinfra
options:
  remote_addr:
    description: The chroot directory.
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
"""

ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/root",
    "DEBIAN_FRONTEND": "noninteractive",
}


class Connection(ConnectionBase):
    transport = "aiinfra_chroot"
    has_pipelining = True
    has_tty = False
    default_user = "root"

    def _root(self) -> str:
        root = self.get_option("remote_addr")
        if not os.path.isdir(os.path.join(root, "bin")):
            raise AnsibleError(f"{root} is not a chroot tree")
        return root

    def _connect(self):
        if not self._connected:
            self._root()
            self._connected = True
        return self

    def exec_command(self, cmd, in_data=None, sudoable=False):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        proc = subprocess.Popen(
            ["chroot", self._root(), "/bin/sh", "-c", cmd],
            stdin=subprocess.PIPE if in_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
            cwd="/",
        )
        stdout, stderr = proc.communicate(in_data)
        return proc.returncode, stdout, stderr

    def _inside(self, path: str) -> str:
        return os.path.join(self._root(), os.path.normpath(path).lstrip("/"))

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        shutil.copyfile(in_path, self._inside(out_path))

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        shutil.copyfile(self._inside(in_path), out_path)

    def close(self):
        self._connected = False
