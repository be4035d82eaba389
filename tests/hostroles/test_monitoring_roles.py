"""The monitoring roles (dcgm's exporter, node_exporter, slurm_exporter): their shape, and their
defaults evaluated by Ansible over prod's inventory against what Prometheus scrapes."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from aiinfra.catalog import monitoring as facts
from aiinfra.render.monitoring import host_exporter_hosts
from conftest import ROOT, load_stack

from .ansible_run import ansible_playbook, run_playbook
from .inventory import mini_inventory
from .test_role_docs import test_internal_variables_start_with_an_underscore_and_the_role as internal_vars
from .test_role_docs import test_role_shape_and_variable_table as role_shape

HERE = Path(__file__).resolve().parent
ROLES = ["node_exporter", "slurm_exporter"]
# a Slurm GPU node, a Kubernetes worker, a Slurm controller, a Kubernetes control plane host, a login host
HOSTS = ["gpu001", "gpu500", "mgmt01", "kcp01", "login01"]


@pytest.mark.parametrize("role", ROLES)
def test_role_shape_and_variables(role):
    role_shape(role)
    internal_vars(role)


def test_site_runs_the_roles_on_their_groups():
    plays = {p["roles"][0]["role"]: p["hosts"] for p in yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
             if p.get("roles")}
    assert plays["node_exporter"] == "all" and plays["slurm_exporter"] == "slurm_controller"
    assert plays["dcgm"] == "gpu_nodes"


needs_ansible = pytest.mark.skipif(shutil.which(ansible_playbook()) is None and not Path(ansible_playbook()).exists(),
                                   reason="ansible-playbook is not installed")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monitoring-roles")
    built = load_stack("prod")
    inventory = tmp / "inventory.yml"
    inventory.write_text(mini_inventory(built, HOSTS))
    out = tmp / "out"
    r = run_playbook(HERE / "render-monitoring-roles.yml", inventory, "-e", f"out={out}")
    assert r.rc == 0, r.tail()
    return built, out


def _vars(out: Path, host: str) -> dict:
    return json.loads((out / host / "vars.json").read_text())


def _argv(unit: str) -> list[str]:
    line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


@needs_ansible
def test_the_roles_run_each_exporter_where_prometheus_scrapes_it(evaluated):
    built, out = evaluated
    scraped = host_exporter_hosts(built.cluster)
    gpu_nodes = {h for g in built.cluster.groups.values() if g.gpus_per_node for h in g.hosts}
    for host in HOSTS:
        v = _vars(out, host)
        if host in gpu_nodes:  # site.yml runs the dcgm role on gpu_nodes only
            assert v["dcgm_exporter_enabled"] == (host in scraped["dcgm-exporter"]), host
        assert v["node_exporter_enabled"] == (host in scraped["node-exporter"]), host
        assert v["slurm_exporter"] == (host in scraped["slurm-exporter"]), host
    assert _vars(out, "gpu001")["dcgm_exporter_enabled"] and not _vars(out, "gpu500")["dcgm_exporter_enabled"]


@needs_ansible
def test_versions_and_ports_are_the_pinned_ones_prometheus_expects(evaluated):
    built, out = evaluated
    pins = built.cluster.blueprint.versions.exporters
    v = _vars(out, "mgmt01")
    for exporter, key in (("dcgm-exporter", "dcgm_exporter"), ("node-exporter", "node_exporter"),
                          ("slurm-exporter", "slurm_exporter")):
        assert v[f"{key}_version"] == pins[exporter]
        assert v[f"{key}_listen"] == f":{facts.port(exporter, pins[exporter])}"
    assert v["dcgm_exporter_counters_file"].endswith("manifests/prod/monitoring/dcgm-counters.csv")


@needs_ansible
def test_the_units_use_only_flags_the_pinned_exporters_have(evaluated):
    built, out = evaluated
    pins = built.cluster.blueprint.versions.exporters
    slurm = _argv((out / "mgmt01" / "aiinfra-slurm-exporter.service").read_text())
    known = set(facts.facts()["slurm-exporter"][pins["slurm-exporter"]]["flags"])
    used = {arg.lstrip("-").split("=", 1)[0] for arg in slurm[1:]}
    assert used and used <= known, used - known
    assert f"-web.listen-address=:{facts.port('slurm-exporter', pins['slurm-exporter'])}" in slurm
    node = _argv((out / "gpu001" / "aiinfra-node-exporter.service").read_text())
    assert node[1] == "--web.listen-address=:9100"  # exporter-toolkit v0.11.0 web/kingpinflag/flag.go
    dcgm = _argv((out / "gpu001" / "aiinfra-dcgm-exporter.service").read_text())
    assert dcgm[dcgm.index("--collectors") + 1] == "/etc/dcgm-exporter/counters.csv"  # pkg/cmd/app.go CLIFieldsFile
