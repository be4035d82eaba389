"""Run the Pulumi program under mocks and record every registration, with its parent and
dependencies (Pulumi's MockResourceArgs has neither, the monitor's request has both)."""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

from conftest import ROOT


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    dependencies: list[str]
    inputs: dict[str, Any]


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method's name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            from pulumi.runtime import rpc

            self.registrations.append(Registration(
                type=request.type, name=request.name, urn=response.urn, parent=request.parent,
                custom=bool(request.custom), dependencies=list(request.dependencies),
                inputs=rpc.deserialize_properties(request.object)))
        return response


@dataclass
class ProgramRun:
    registrations: list[Registration]
    exports: dict[str, Any] = field(default_factory=dict)

    def of_type(self, prefix: str) -> list[Registration]:
        return [r for r in self.registrations if r.type.startswith(prefix)]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}


def run_program(env: str, blueprint: dict, config: dict[str, str] | None = None) -> ProgramRun:
    """Run __main__.py for stack ``env`` with ``blueprint`` as aiinfra:cluster; wait for every
    registration to finish."""
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="aiinfra", stack=env, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({"aiinfra:cluster": json.dumps(blueprint), **(config or {})})
    exports: dict[str, Any] = {}
    real_export = pulumi.export
    try:
        pulumi.export = lambda name, value: exports.__setitem__(name, value)
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")))
    finally:
        pulumi.export = real_export
    return ProgramRun(monitor.registrations, exports)
