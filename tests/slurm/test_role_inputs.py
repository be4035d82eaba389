"""The slurm role takes what it needs of the Slurm render from the inventory
(group_vars/all/slurm.yml), never by parsing a rendered file back; those variables say exactly
what the rendered files say; and each path is written once, in Python."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from aiinfra.pipeline import build_file
from conftest import ROOT, load_stack, render

TESTBED = ROOT / "tests" / "fixtures" / "slurm-testbed" / "stacks" / "Pulumi.testbed.yaml"
SLURM_VARS = "ansible/group_vars/all/slurm.yml"
ROLES = [ROOT / "roles" / "slurm", ROOT / "roles" / "munge"]
# Filters and tests that read values out of text.
PARSING = re.compile(r"\b(regex_findall|regex_search|regex_replace|from_yaml(_all)?|from_json|from_ini|"
                     r"community\.general\.\w+|split|search|match)\b")
FILE_LOOKUP = re.compile(r"(lookup|query)\(\s*'(ansible\.builtin\.)?file'")


def built(name: str):
    return build_file(TESTBED, "testbed") if name == "testbed" else load_stack(name)


@pytest.fixture(scope="module", params=["dev", "prod", "testbed"])
def rendered(request) -> dict[str, str]:
    return render(built(request.param), only=["slurm", "host_vars"])


def keyvalues(text: str) -> dict[str, list[str]]:
    """Key=value lines of a Slurm configuration file, parsed here in the test: key -> values."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)=(\S+)", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def one(conf: dict[str, list[str]], key: str) -> str:
    (value,) = conf[key]
    return value


def role_texts() -> dict[Path, str]:
    return {p: p.read_text() for base in ROLES for p in sorted(base.rglob("*"))
            if p.is_file() and p.suffix in (".yml", ".yaml", ".j2")}


def expressions(text: str) -> list[str]:
    """Jinja expressions and Ansible conditions: every `{{ ... }}` and every YAML scalar (a
    `when:`/`that:`/`until:` entry is a bare expression)."""
    found = re.findall(r"\{\{.*?\}\}", text, flags=re.S)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return found

    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)
        elif isinstance(node, str):
            yield node

    return found + list(walk(data))


def test_no_role_parses_a_rendered_file():
    texts = role_texts()
    # Variables that hold a file's text (the role's own scripts and the rendered files).
    file_vars = set()
    for path, text in texts.items():
        if path.parent.name in ("vars", "defaults"):
            for name, value in (yaml.safe_load(text) or {}).items():
                if isinstance(value, str) and FILE_LOOKUP.search(value):
                    file_vars.add(name)
    assert "_slurm_dbd_conf_text" in file_vars  # copied with the password appended: fine, not parsed
    reads_file = re.compile(FILE_LOOKUP.pattern + "|" + "|".join(rf"\b{re.escape(v)}\b" for v in file_vars))
    offenders = []
    for path, text in texts.items():
        for expr in expressions(text):
            if reads_file.search(expr) and PARSING.search(expr):
                offenders.append(f"{path.relative_to(ROOT)}: {expr.strip()[:120]}")
        for name in ("regex_findall", "regex_search"):  # only good for reading values out of text
            if name in text:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, "\n".join(offenders)


def test_the_role_reads_the_render_from_the_inventory():
    defaults = yaml.safe_load((ROOT / "roles/slurm/defaults/main.yml").read_text())
    rendered = yaml.safe_load(render(load_stack("dev"), only=["host_vars"])[SLURM_VARS])
    taken = {m for v in defaults.values() if isinstance(v, str) for m in re.findall(r"aiinfra_slurm_\w+", v)}
    assert taken <= set(rendered), taken - set(rendered)
    for fact in ("cluster_name", "state_save_location", "slurmctld_pid_file", "slurmd_pid_file",
                 "slurmd_spool_dir", "dbd_pid_file", "db_name", "db_user", "topology_plugin",
                 "accounting", "restart_settings", "config_dir", "user", "health_check_program"):
        assert f"aiinfra_slurm_{fact}" in taken, fact


def test_group_vars_say_what_the_rendered_files_say(rendered):
    gv = yaml.safe_load(rendered[SLURM_VARS])
    conf = keyvalues(rendered["slurm/slurm.conf"])
    assert gv["aiinfra_slurm_cluster_name"] == one(conf, "ClusterName")
    assert gv["aiinfra_slurm_user"] == one(conf, "SlurmUser")
    assert gv["aiinfra_slurm_state_save_location"] == one(conf, "StateSaveLocation")
    assert gv["aiinfra_slurm_slurmctld_pid_file"] == one(conf, "SlurmctldPidFile")
    assert gv["aiinfra_slurm_slurmctld_log_file"] == one(conf, "SlurmctldLogFile")
    assert gv["aiinfra_slurm_slurmd_spool_dir"] == one(conf, "SlurmdSpoolDir")
    assert gv["aiinfra_slurm_slurmd_pid_file"] == one(conf, "SlurmdPidFile")
    assert gv["aiinfra_slurm_slurmd_log_file"] == one(conf, "SlurmdLogFile")
    assert gv["aiinfra_slurm_health_check_program"] == one(conf, "HealthCheckProgram")
    assert gv["aiinfra_slurm_topology_plugin"] == conf.get("TopologyPlugin", [None])[0]
    assert (gv["aiinfra_slurm_topology_plugin"] is not None) == ("slurm/topology.conf" in rendered)
    config_dir = gv["aiinfra_slurm_config_dir"]
    assert one(conf, "Prolog") == f"{config_dir}/prolog.d/*" and one(conf, "Epilog") == f"{config_dir}/epilog.d/*"
    assert f"include {config_dir}/plugstack.conf.d/*.conf" in rendered["slurm/plugstack.conf"].splitlines()

    (pyxis,) = [line.split() for line in rendered["slurm/plugstack.conf.d/pyxis.conf"].splitlines()
                if line and not line.startswith("#")]
    assert pyxis[0] == "optional" and pyxis[1] == gv["aiinfra_slurm_pyxis_plugin"]
    assert f"runtime_path={gv['aiinfra_slurm_pyxis_runtime_path']}" in pyxis[2:]

    dbd = keyvalues(rendered["slurm/slurmdbd.conf"])
    assert gv["aiinfra_slurm_dbd_pid_file"] == one(dbd, "PidFile")
    assert gv["aiinfra_slurm_dbd_log_file"] == one(dbd, "LogFile")
    assert gv["aiinfra_slurm_db_name"] == one(dbd, "StorageLoc")
    assert gv["aiinfra_slurm_db_user"] == one(dbd, "StorageUser")
    assert gv["aiinfra_slurm_user"] == one(dbd, "SlurmUser")


def test_restart_record_is_lines_of_slurm_conf(rendered):
    gv = yaml.safe_load(rendered[SLURM_VARS])
    lines = rendered["slurm/slurm.conf"].splitlines()
    record = gv["aiinfra_slurm_restart_settings"]
    assert all(line in lines for line in record)
    assert [ln for ln in record if ln.startswith("NodeName=")] == [ln for ln in lines if ln.startswith("NodeName=")]
    for key in ("ClusterName", "SlurmctldHost", "StateSaveLocation", "SlurmdSpoolDir", "SelectType", "GresTypes"):
        assert [ln for ln in record if ln.startswith(f"{key}=")] == [ln for ln in lines if ln.startswith(f"{key}=")]
    for key in ("EnforcePartLimits", "PartitionName", "HealthCheckInterval", "SlurmctldTimeout"):  # reconfigure
        assert not any(ln.startswith(f"{key}=") for ln in record), key


def test_accounting_objects_come_from_the_blueprint():
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"]["aiinfra:cluster"]
    gv = yaml.safe_load(render(load_stack("prod"), only=["host_vars"])[SLURM_VARS])
    acct = gv["aiinfra_slurm_accounting"]
    assert acct["cluster"] == raw["slurm"]["cluster_name"] == "nacc"
    assert {q["name"]: q["preempt"] for q in acct["qos"]} == {"normal": [], "high": ["low"], "low": []}


def test_pyxis_and_daemon_paths_are_written_once_in_python():
    gv = yaml.safe_load(render(load_stack("prod"), only=["host_vars"])[SLURM_VARS])
    facts = [gv[f"aiinfra_slurm_{name}"] for name in (
        "pyxis_plugin", "pyxis_runtime_path", "slurmctld_pid_file", "slurmctld_log_file", "slurmd_spool_dir",
        "slurmd_pid_file", "slurmd_log_file", "dbd_pid_file", "dbd_log_file", "db_name")]
    for fact in facts:
        for folder in ("roles", "templates"):
            hits = [p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*")
                    if p.is_file() and fact in p.read_text(errors="replace")]
            assert not hits, (fact, hits)
        in_src = sum(p.read_text().count(f'"{fact}"') for p in (ROOT / "src").rglob("*.py"))
        assert in_src == 1, (fact, in_src)
