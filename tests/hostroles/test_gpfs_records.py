"""The gpfs_client role's filter plugin: records of the mm commands' machine-readable (-Y) output."""

from __future__ import annotations

import importlib.util

from conftest import ROOT


def _records():
    spec = importlib.util.spec_from_file_location(
        "gpfs_records", ROOT / "roles" / "gpfs_client" / "filter_plugins" / "gpfs_records.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.gpfs_records


# mmgetstate -Y and mmlscluster -Y as Storage Scale prints them (field names as in the HEADER lines
# that OpenStack Cinder's GPFS driver tests and IBM's install-infra parse)
MMGETSTATE = ("mmgetstate::HEADER:version:reserved:reserved:nodeName:nodeNumber:state:quorum:nodesUp:totalNodes:"
              "remarks:cnfsState:\nmmgetstate::0:1:::gpu01:3:arbitrating:2:3:3:quorum%3A node:(undefined):\n")
MMLSCLUSTER = ("mmlscluster:clusterSummary:HEADER:version:reserved:reserved:clusterName:clusterId:\n"
               "mmlscluster:clusterSummary:0:1:::scale.example.org:4711:\n"
               "mmlscluster:clusterNode:HEADER:version:reserved:reserved:nodeNumber:daemonNodeName:\n"
               "mmlscluster:clusterNode:0:1:::1:nsd01.example.org:\n"
               "mmlscluster:clusterNode:0:1:::2:gpu01.example.org:\n")


def test_records_are_keyed_by_their_header_and_decoded():
    gpfs_records = _records()
    [state] = gpfs_records(MMGETSTATE)
    assert state["state"] == "arbitrating" and state["nodeName"] == "gpu01"
    assert state["remarks"] == "quorum: node"  # %3A decoded


def test_records_of_one_section():
    gpfs_records = _records()
    assert [r["clusterName"] for r in gpfs_records(MMLSCLUSTER, "clusterSummary")] == ["scale.example.org"]
    assert [r["daemonNodeName"] for r in gpfs_records(MMLSCLUSTER, "clusterNode")] == [
        "nsd01.example.org", "gpu01.example.org"]
    assert gpfs_records("mmgetstate: This node does not belong to a GPFS cluster.") == []
    assert gpfs_records("") == []
