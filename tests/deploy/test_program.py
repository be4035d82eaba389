"""The Pulumi program under Pulumi's mocks: the stack's blueprint is validated and exported."""

from __future__ import annotations

import json
import runpy

import pulumi
import pytest
import yaml

from conftest import ROOT


class Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(args)
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def run_program(env: str, blueprint: dict | None = None):
    """Run __main__.py for stack ``env`` under mocks; returns (mocks, exported outputs)."""
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())
    cluster = blueprint if blueprint is not None else doc["config"]["aiinfra:cluster"]
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="aiinfra", stack=env, preview=False)
    pulumi.runtime.set_all_config({"aiinfra:cluster": json.dumps(cluster)})
    exports = {}
    real_export = pulumi.export
    try:
        pulumi.export = lambda name, value: exports.__setitem__(name, value)
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
    finally:
        pulumi.export = real_export
    return mocks, exports


def test_program_exports_the_prod_totals():
    _, exports = run_program("prod")
    assert exports["environment"] == "prod"
    assert exports["totals"]["gpus"] == 4096
    assert exports["schedulers"]["kubernetes"]["gpus"] == 256


def test_program_refuses_an_invalid_blueprint_with_the_key_path():
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["aiinfra:cluster"]
    doc["node_types"]["gpu"]["gpu"]["model"] = "h100-80g"
    with pytest.raises(pulumi.RunError) as exc:
        run_program("dev", doc)
    assert "aiinfra:cluster.node_types.gpu.gpu.model" in str(exc.value)
    assert "did you mean 'h100-80gb'" in str(exc.value)
