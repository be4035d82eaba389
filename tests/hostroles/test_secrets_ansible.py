"""Ansible and the blueprint's strings, secrets and run artifacts, for real (ansible-core and
ansible-runner of .venv):

- a blueprint string that reads as a Jinja template reaches the inventory marked unsafe (static
  JSON, group_vars and the dynamic JSON): Ansible passes it on as text and runs nothing;
- `aiinfra hosts up` (deploy.ansible.run_site) keeps neither the operator's environment nor -e
  secrets in its run folder, and keeps only the last runs;
- the tasks that handle a secret are no_log.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

import yaml

from aiinfra.pipeline import Built, build_data
from aiinfra.render.host_vars import render_host_vars
from aiinfra.render.inventory import (
    INVENTORY_FILE,
    could_template,
    dynamic_list,
    inventory_model,
    render_inventory,
)
from conftest import ROOT

from .ansible_run import BIN, run_playbook

# ------------------------------------------------------------------ blueprint strings are not templated


def _injected_raw(marks: Path) -> dict:
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["aiinfra:cluster"]
    values = _injected_values(marks)
    raw["versions"]["images"]["deepspeed"] = values["chart"]  # an all-variable (chart versions are checked)
    raw["node_types"]["gpu"]["storage_hca"] = values["storage_hca"]
    raw["storage"]["lustre"]["mount_options"] = ["flock", values["mount_option"]]
    raw["fabric"]["pkeys"] = [values["pkey"]]
    return raw


def _injected_values(marks: Path) -> dict[str, str]:
    return {
        "chart": f"{{{{ lookup('pipe', 'touch {marks}/chart') }}}}",
        "storage_hca": f"{{{{ lookup('pipe', 'touch {marks}/hca') }}}}",
        "mount_option": f"{{% set _ = lookup('pipe', 'touch {marks}/mount') %}}x",
        "pkey": "#jinja2:variable_start_string:'[[', variable_end_string:']]'\n"
                f"[[ lookup('pipe', 'touch {marks}/pkey') ]]",
    }


def _injected(marks: Path) -> tuple[Built, dict[str, str]]:
    """dev's blueprint with a command-running template in four fields that reach the inventory:
    the all-variables (versions.images), a group's variables (storage_hca), and two group_vars
    files (lustre mount options; fabric pkeys, with a ``#jinja2:`` header that changes the delimiters)."""
    return build_data(_injected_raw(marks), "stacks/Pulumi.dev.yaml", "dev"), _injected_values(marks)


def _write_static(built: Built, dest: Path) -> Path:
    """The rendered inventory and its group_vars, as `aiinfra render` lays them out."""
    files = {**render_inventory(built.cluster, built.plan), **render_host_vars(built.cluster, built.plan)}
    for rel, text in files.items():
        if rel.startswith("ansible/"):
            path = dest / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return dest / INVENTORY_FILE


def _unwrap(value: object) -> object:
    """``value`` with every ``{"__ansible_unsafe": text}`` replaced by its text."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _probe(tmp: Path, inventory: Path) -> dict:
    """Resolve the injected variables on gpu01 through Ansible and return what they became."""
    out = tmp / "resolved.json"
    out.unlink(missing_ok=True)
    play = [{"name": "Probe", "hosts": "gpu01", "gather_facts": False,
             "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
             "tasks": [{"name": "Write the values as Ansible sees them", "ansible.builtin.copy": {
                 "dest": str(out), "mode": "0600",
                 "content": "{{ {'chart': aiinfra_versions.images.deepspeed, 'storage_hca': aiinfra_storage_hca, "
                            "'mount_option': aiinfra_lustre.mount_options[1], "
                            "'pkey': aiinfra_fabric.pkeys[0]} | to_json }}"}}]}]
    playbook = tmp / "probe" / "probe.yml"
    playbook.parent.mkdir(exist_ok=True)
    playbook.write_text(yaml.safe_dump(play))
    r = run_playbook(playbook, inventory)
    assert r.rc == 0, r.tail()
    return json.loads(out.read_text())


def test_could_template_covers_what_ansible_templates():
    """Every string ansible-core's own check calls a possible template is one this marks."""
    from ansible._internal._templating._jinja_bits import is_possibly_template

    samples = ["{{ x }}", "a{%b", "{#", "#jinja2:trim_blocks:False\nx", "plain", "10.0.0.1@o2ib",
               "/run/%n.pid", "gpu:h100:8", "a}b", "ab#", "{", "#"]
    samples += [chr(a) + chr(b) for a in range(32, 127) for b in range(32, 127)]
    for s in samples:
        assert could_template(s) or not is_possibly_template(s), s
    assert not could_template("NodeName=gpu01 CPUs=224 Gres=gpu:h100:8")
    assert not could_template("/run/slurmd-%n.pid")


def test_static_inventory_strings_are_not_templated(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    built, values = _injected(marks)
    inventory = _write_static(built, tmp_path / "rendered")
    tagged = {p.name for p in inventory.parent.rglob("*.yml") if "!unsafe" in p.read_text()}
    assert tagged == {"storage.yml", "fabric.yml"}
    static = json.loads(inventory.read_text())["all"]
    assert static["vars"]["aiinfra_versions"]["images"]["deepspeed"] == {"__ansible_unsafe": values["chart"]}
    assert static["children"]["gpu_train"]["vars"]["aiinfra_storage_hca"] == {"__ansible_unsafe": values["storage_hca"]}
    assert _probe(tmp_path, inventory) == values  # the literal text, untouched
    assert list(marks.iterdir()) == []  # no lookup ran


def test_unmarked_the_same_inventory_runs_the_commands(tmp_path):
    """The control: the same variables written without the tag, Ansible runs every one of them."""
    marks = tmp_path / "marks"
    marks.mkdir()
    built, _ = _injected(marks)
    inventory = _write_static(built, tmp_path / "rendered")
    for path in inventory.parent.rglob("*.yml"):
        path.write_text(path.read_text().replace("!unsafe ", ""))
    inventory.write_text(json.dumps(_unwrap(json.loads(inventory.read_text()))))
    _probe(tmp_path, inventory)
    assert sorted(p.name for p in marks.iterdir()) == ["chart", "hca", "mount", "pkey"]


def test_dynamic_inventory_strings_are_not_templated(tmp_path):
    """Through the real protocol: Ansible runs `aiinfra inventory --list` (playbooks/inventory.sh's
    command) over a project whose blueprint carries the templates."""
    marks = tmp_path / "marks"
    marks.mkdir()
    built, values = _injected(marks)
    listing = dynamic_list(inventory_model(built.cluster))
    images = listing["all"]["vars"]["aiinfra_versions"]["images"]
    assert images["deepspeed"] == {"__ansible_unsafe": values["chart"]}
    assert images["vllm"] == built.cluster.blueprint.versions.images["vllm"]  # no template: as it is
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    raw["config"]["aiinfra:cluster"] = _injected_raw(marks)
    (project / "stacks" / "Pulumi.dev.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    script = tmp_path / "inventory" / "aiinfra-inventory"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nAIINFRA_ROOT={project} exec {sys.executable} -m aiinfra.cli inventory "
                      f"--stack dev \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    # No group_vars beside the script: it carries the group_vars/all values itself (marked too).
    assert _probe(tmp_path, script) == values
    assert list(marks.iterdir()) == []


def test_ansible_inventory_loads_the_marked_inventory(tmp_path):
    built, values = _injected(tmp_path)
    inventory = _write_static(built, tmp_path / "rendered")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_NOCOLOR="1")
    import subprocess

    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inventory), "--list"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    gpu01 = listed["_meta"]["hostvars"]["gpu01"]
    # ansible-inventory writes an untrusted string back as {"__ansible_unsafe": ...}, a plain one as text.
    assert gpu01["aiinfra_storage_hca"] == {"__ansible_unsafe": values["storage_hca"]}
    assert gpu01["aiinfra_node_group"] == "gpu-train"
    assert sorted(h for g in listed["gpu_nodes"]["children"] for h in listed[g]["hosts"]) == ["gpu01", "gpu02"]


# ------------------------------------------------------------------ run folders keep no secret

PASSPHRASE = "canary-passphrase-7f3a"  # the operator's environment
SECRET = "canary-extra-var-91bc"  # -e secret=...
FILE_SECRET = "canary-vars-file-5d20"  # -e @secrets.yml


def _project(tmp: Path) -> tuple[Path, Path]:
    """A project root with a small site.yml that uses the three secrets (no_log) and prints
    something else, over one local host."""
    root = tmp / "project"
    (root / "roles").mkdir(parents=True)
    (root / "ansible.cfg").write_text((ROOT / "ansible.cfg").read_text())
    out = tmp / "used.txt"
    site = [{"name": "Use the secrets", "hosts": "all", "gather_facts": False, "tasks": [
        {"name": "Write what the run was given (no_log)", "no_log": True, "ansible.builtin.copy": {
            "dest": str(out), "mode": "0600",
            "content": "{{ secret }} {{ file_secret }} "
                       "{{ lookup('ansible.builtin.env', 'PULUMI_CONFIG_PASSPHRASE') }}"}},
        {"name": "Say something that is not secret", "ansible.builtin.debug": {"msg": "configured"}}]}]
    (root / "playbooks").mkdir()
    (root / "playbooks" / "site.yml").write_text(yaml.safe_dump(site, sort_keys=False))
    inventory = root / "manifests" / "dev" / INVENTORY_FILE
    inventory.parent.mkdir(parents=True)
    inventory.write_text(json.dumps({"all": {"hosts": {"local1": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    secrets_file = tmp / "secrets.yml"
    secrets_file.write_text(yaml.safe_dump({"file_secret": FILE_SECRET}))
    return root, out


def _files_holding(base: Path, *needles: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(base.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits = [n for n in needles if n.encode() in data]
            if hits:
                found[str(path.relative_to(base))] = hits
    return found


def _run(root: Path, tmp: Path, **kwargs):
    from aiinfra.deploy.ansible import run_site
    from conftest import load_stack

    extra_vars = [f"secret={SECRET}", f"@{tmp / 'secrets.yml'}"]
    return run_site(load_stack("dev").cluster, root, extra_vars=extra_vars, **kwargs)


def test_run_folder_keeps_no_environment_and_no_extra_vars(tmp_path, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    root, used = _project(tmp_path)
    result = _run(root, tmp_path)
    assert result.ok, result.messages
    assert result.hosts["local1"].ok == 2
    assert used.read_text() == f"{SECRET} {FILE_SECRET} {PASSPHRASE}"  # the run had all three
    runs = root / ".aiinfra" / "runs"
    assert [p for p in runs.iterdir()] == [result.private_data_dir]
    assert list(result.private_data_dir.glob("artifacts/*/job_events/*.json"))  # the events are kept
    assert not (result.private_data_dir / "env").exists()  # no envvars, extravars, cmdline files
    command = json.loads(next(result.private_data_dir.glob("artifacts/*/command")).read_text())
    assert set(command) == {"command", "cwd"} and command["command"][0] == "ansible-playbook"
    assert f"@{tmp_path / 'secrets.yml'}" in command["command"]  # a path, kept
    stdout = next(result.private_data_dir.glob("artifacts/*/stdout")).read_text()
    assert "configured" in stdout  # what is not secret is still shown
    assert _files_holding(root / ".aiinfra", PASSPHRASE, SECRET, FILE_SECRET) == {}


def test_ansible_runner_by_default_keeps_them(tmp_path, monkeypatch):
    """The control: ansible-runner's defaults, same run, leave the secrets in the run folder."""
    import ansible_runner

    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    root, used = _project(tmp_path)
    private = tmp_path / "private"
    private.mkdir()
    runner = ansible_runner.run(
        private_data_dir=str(private), playbook=str(root / "playbooks" / "site.yml"),
        inventory=[str(root / "manifests" / "dev" / INVENTORY_FILE)],
        cmdline=f"--extra-vars secret={SECRET} --extra-vars @{tmp_path / 'secrets.yml'}",
        envvars={"ANSIBLE_CONFIG": str(root / "ansible.cfg")}, quiet=True)
    assert runner.rc == 0
    assert used.read_text() == f"{SECRET} {FILE_SECRET} {PASSPHRASE}"
    held = _files_holding(private, PASSPHRASE, SECRET, FILE_SECRET)
    command = [hits for path, hits in held.items() if path.endswith("/command")]
    assert command and PASSPHRASE in command[0] and SECRET in command[0]
    assert "env/cmdline" in held and not any(FILE_SECRET in hits for hits in held.values())


def test_only_the_newest_runs_are_kept(tmp_path):
    from aiinfra.deploy.ansible import KEEP_RUNS, new_private_data_dir, prune_runs

    root, _ = _project(tmp_path)
    made = [_run(root, tmp_path, keep_runs=2).private_data_dir for _ in range(5)]
    assert sorted((root / ".aiinfra" / "runs").iterdir()) == made[-2:]
    # The default keeps KEEP_RUNS; other entries of runs/ are not touched.
    (root / ".aiinfra" / "runs" / "notes").mkdir()
    extra = [new_private_data_dir(root) for _ in range(KEEP_RUNS + 3)]
    removed = prune_runs(root)
    assert removed == made[-2:] + extra[:3]  # 15 runs, the oldest 5 go
    assert sorted(p.name for p in (root / ".aiinfra" / "runs").iterdir()) == sorted(
        [p.name for p in extra[3:]] + ["notes"])
    assert KEEP_RUNS == 10


# ------------------------------------------------------------------ tasks that handle a secret are no_log

# What is secret: the variables that hold one, what kubeadm prints or is given (bootstrap token,
# certificate key, the join configuration) and the commands that print them.
SECRET_MARKERS = re.compile(
    r"\bmunge_key\b|\bslurm_dbd_storage_pass\b|_slurm_dbd_storage_pass_(conf|sql)\b|_kubernetes_token\b"
    r"|_kubernetes_certificate_key\b|kubeadm-join\.yaml|--upload-certs|\bkubeadm\b.*\b(init|join|token)\b")


def _tasks(node: object, inherited: bool, where: str):
    """(task, no_log in force, where) for every task under ``node`` (blocks opened)."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _tasks(item, inherited, f"{where}[{i}]")
    elif isinstance(node, dict):
        no_log = inherited or node.get("no_log") is True
        sections = [k for k in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")
                    if isinstance(node.get(k), list)]
        if sections:
            for k in sections:
                yield from _tasks(node[k], no_log, f"{where}.{k}")
        else:
            yield node, no_log, where


def test_every_task_that_handles_a_secret_is_no_log():
    files = sorted([*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("roles/*/handlers/*.yml"),
                    *ROOT.glob("playbooks/*.yml")])
    offenders, seen = [], 0
    for path in files:
        for task, no_log, where in _tasks(yaml.safe_load(path.read_text()) or [], False, ""):
            text = json.dumps({k: v for k, v in task.items() if k != "name"})
            if not SECRET_MARKERS.search(text):
                continue
            seen += 1
            # An assert returns its condition's text and fail_msg, never a value
            # (ansible/plugins/action/assert.py): it may name a secret without no_log.
            if not no_log and "ansible.builtin.assert" not in task:
                offenders.append(f"{path.relative_to(ROOT)}{where}: {task.get('name')}")
    assert not offenders, offenders
    assert seen >= 12  # munge key, slurmdbd password and SQL, kubeadm init/token/certs/join
