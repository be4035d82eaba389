"""The version lock: the compatibility table of the catalog, as `aiinfra validate` applies it."""

from __future__ import annotations

import pytest
import yaml

from aiinfra.catalog.versions import (
    DOCA_SUPPORTED_OS,
    LUSTRE_CLIENT_SUPPORT,
    OS_KERNEL_SERIES,
    check_versions,
)
from conftest import load_stack


def rules(versions: dict) -> dict[str, str]:
    return {hit.rule: hit.message for hit in check_versions(versions)}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_shipped_environments_are_compatible(env):
    versions = load_stack(env).cluster.blueprint.versions.model_dump()
    assert rules(versions) == {}


BASE = {"os": "ubuntu-22.04", "kernel": "5.15.0-134-generic", "nvidia_driver": "570.133.20", "cuda": "12.8",
        "nccl": "2.26.2", "doca_ofed": "2.10.0", "lustre_client": "2.16.1"}


@pytest.mark.parametrize(("change", "rule", "named"), [
    ({"os": "ubuntu-24.04", "kernel": "6.8.0-51-generic", "doca_ofed": "2.6.0"}, "doca-unsupported-os",
     ["2.6.0", "ubuntu-24.04"]),
    ({"doca_ofed": "1.5.0"}, "unknown-doca-version", ["1.5.0"]),
    ({"kernel": "6.8.0-51-generic", "os": "rhel-9"}, "kernel-not-for-os", ["6.8.0-51-generic", "rhel-9"]),
    ({"lustre_client": "2.16.1", "doca_ofed": "2.5.0"}, "lustre-unsupported-ofed", ["2.16.1", "2.5.0"]),
    ({"lustre_client": "2.15.4", "kernel": "6.8.0-50-generic"}, "lustre-unsupported-kernel",
     ["2.15.4", "6.8.0-50-generic"]),
    ({"lustre_client": "2.14.0"}, "unknown-lustre-version", ["2.14.0"]),
    ({"nvidia_driver": "550.127.08"}, "driver-too-old-for-cuda", ["550.127.08", "12.8"]),
])
def test_an_incompatible_pair_is_named_with_both_versions(change, rule, named):
    found = rules({**BASE, **change})
    assert rule in found, found
    for version in named:
        assert version in found[rule]


def test_a_version_that_does_not_parse_is_left_to_bad_version():
    assert rules({**BASE, "kernel": "generic", "lustre_client": "next"}) == {}


def test_tables_only_name_operating_systems_the_blueprint_allows():
    from typing import get_args

    from aiinfra.spec.models import Versions

    allowed = set(get_args(Versions.model_fields["os"].annotation))
    assert set(OS_KERNEL_SERIES) == allowed
    assert all(set(oses) <= allowed for oses in DOCA_SUPPORTED_OS.values())
    for support in LUSTRE_CLIENT_SUPPORT.values():
        assert set(support.kernels) <= allowed
        assert support.doca_min in DOCA_SUPPORTED_OS and support.doca_max in DOCA_SUPPORTED_OS
        for osname, series in support.kernels.items():
            assert set(series) <= set(OS_KERNEL_SERIES[osname]), (osname, series)


def validate_dev_with(aiinfra, tmp_path, old: str, new: str):
    """``aiinfra validate`` of dev's blueprint with ``old`` replaced by ``new``."""
    from conftest import ROOT

    text = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()
    assert old in text
    f = tmp_path / "Pulumi.changed.yaml"
    f.write_text(text.replace(old, new))
    return aiinfra("validate", "--file", str(f))


def test_validate_reports_the_incompatibility_at_its_key(aiinfra, tmp_path):
    r = validate_dev_with(aiinfra, tmp_path, "doca_ofed: 2.9.1", "doca_ofed: 2.10.0")
    assert r.code == 1
    assert "aiinfra:cluster.versions.lustre_client: error[lustre-unsupported-ofed]" in r.stderr
    assert "2.15.6" in r.stderr and "2.10.0" in r.stderr


HOST = {**BASE, "kubernetes": "1.31.7", "dcgm": "4.2.3", "nccl_tests": "2.14.1", "megatron_lm": "core_v0.12.0",
        "exporters": {"dcgm-exporter": "4.2.3-4.1.3"}, "images": {"pause": "registry.k8s.io/pause:3.10"}}


@pytest.mark.parametrize(("change", "rule", "named"), [
    # dcgm-exporter releases are <DCGM>-<exporter> (github.com/NVIDIA/dcgm-exporter tags, e.g. 4.2.3-4.1.3)
    ({"exporters": {"dcgm-exporter": "4.1.1-4.0.4"}}, "dcgm-exporter-mismatch", ["4.1.1-4.0.4", "4.2.3"]),
    # kubeadm 1.30 pulls pause:3.9, 1.31 pause:3.10 (its PauseVersion constant)
    ({"images": {"pause": "registry.k8s.io/pause:3.9"}}, "pause-not-kubeadms", ["pause:3.9", "1.31"]),
    ({"kubernetes": "1.30.5"}, "pause-not-kubeadms", ["pause:3.10", "1.30", "pause:3.9"]),
    ({"nccl_tests": "2.99.0"}, "unknown-nccl-tests-version", ["2.99.0", "2.14.1"]),
    ({"megatron_lm": "core_v0.99.0"}, "unknown-megatron-lm-version", ["core_v0.99.0", "core_v0.12.0"]),
])
def test_host_software_pairs_are_checked(change, rule, named):
    assert rules(HOST) == {}
    found = rules({**HOST, **change})
    assert rule in found, found
    for text in named:
        assert text in found[rule]


@pytest.mark.parametrize(("drop", "key"), [
    ("container_toolkit", "container_toolkit"), ("enroot", "enroot"), ("pyxis", "pyxis"), ("dcgm", "dcgm"),
    ("nccl_tests", "nccl_tests"), ("megatron_lm", "megatron_lm"), ("pause", "images"),
])
def test_a_host_version_a_role_needs_must_be_pinned(aiinfra, tmp_path, drop, key):
    from conftest import ROOT

    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    versions = raw["config"]["aiinfra:cluster"]["versions"]
    if drop == "pause":
        del versions["images"]["pause"]
    else:
        del versions[drop]
    f = tmp_path / "Pulumi.unpinned.yaml"
    f.write_text(yaml.safe_dump(raw))
    r = aiinfra("validate", "--file", str(f))
    assert r.code == 1
    line = next(ln for ln in r.stderr.splitlines() if "error[missing-version]" in ln)
    assert f"aiinfra:cluster.versions.{key}: error[missing-version]" in line and "(fix: pin" in line


def test_a_version_in_the_wrong_form_is_refused(aiinfra, tmp_path):
    r = validate_dev_with(aiinfra, tmp_path, "megatron_lm: core_v0.12.0", "megatron_lm: main")
    assert r.code == 1
    assert "aiinfra:cluster.versions.megatron_lm: error[bad-version]" in r.stderr
