#!/usr/bin/python3
"""Ansible module: install many small files and directories in one call (one round trip per host).

The slurm role ships a dozen rendered files and scripts to every host; one ``copy`` per file
costs a module run each, which dominates a play over hundreds of hosts. This module takes them
all, writes only those whose content or attributes differ (atomically), and returns which
changed, so handlers can restart only what needs it.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: aiinfra_files
short_description: Install several small text files and directories at once
description:
  - Writes each file whose content differs (atomic rename) and sets owner, group and mode.
  - Text files: a content without a final newline gets one.
  - Creates each directory and sets owner, group and mode.
options:
  directories:
    description: List of {path, owner, group, mode}.
    type: list
    elements: dict
    default: []
  files:
    description: dest -> content of files owned by root, mode 0644.
    type: dict
    default: {}
  scripts:
    description: dest -> content of programs owned by root, mode 0755.
    type: dict
    default: {}
author: aiinfra
"""

RETURN = r"""
changed_files:
  description: Destinations whose content or attributes changed.
  type: list
  returned: always
changed_directories:
  description: Directories created or whose attributes changed.
  type: list
  returned: always
"""

import os  # noqa: E402  (Ansible modules put DOCUMENTATION first)
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def _attrs(module: AnsibleModule, path: str, spec: dict, changed: bool) -> bool:
    args = module.load_file_common_arguments(
        {"path": path, "owner": spec.get("owner"), "group": spec.get("group"), "mode": spec.get("mode")}
    )
    return module.set_fs_attributes_if_different(args, changed)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directories": {"type": "list", "elements": "dict", "default": []},
            "files": {"type": "dict", "default": {}},
            "scripts": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    changed_dirs: list[str] = []
    changed_files: list[str] = []
    diffs: list[dict] = []  # shown by --diff (and by `aiinfra hosts up --check`)
    for spec in module.params["directories"]:
        path = spec["path"]
        if not os.path.isdir(path):
            changed_dirs.append(path)
            if module.check_mode:
                continue
            os.makedirs(path, exist_ok=True)
        if not module.check_mode and _attrs(module, path, spec, False) and path not in changed_dirs:
            changed_dirs.append(path)
    wanted = [(dest, text, "0644") for dest, text in sorted(module.params["files"].items())]
    wanted += [(dest, text, "0755") for dest, text in sorted(module.params["scripts"].items())]
    for dest, text, mode in wanted:
        spec = {"owner": "root", "group": "root", "mode": mode}
        content = (text if text.endswith("\n") else text + "\n").encode("utf-8")  # text files end in a newline
        try:
            with open(dest, "rb") as f:
                current = f.read()
        except OSError:
            current = None
        same = current == content
        if not same:
            changed_files.append(dest)
            if module._diff:
                diffs.append({"before_header": dest, "after_header": dest,
                              "before": (current or b"").decode("utf-8", "replace"),
                              "after": content.decode("utf-8", "replace")})
            if module.check_mode:
                continue
            fd, tmp = tempfile.mkstemp(prefix=".aiinfra.", dir=os.path.dirname(dest))
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            module.atomic_move(tmp, dest)
        if module.check_mode:
            continue
        if _attrs(module, dest, spec, False) and dest not in changed_files:
            changed_files.append(dest)
    module.exit_json(changed=bool(changed_files or changed_dirs), changed_files=changed_files,
                     changed_directories=changed_dirs, diff=diffs)


if __name__ == "__main__":
    main()
