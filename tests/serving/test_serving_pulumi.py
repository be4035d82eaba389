"""The serving components under Pulumi's mocks: one per deployment, children parented, objects from
the in-memory render, and dependencies on the platform components they need."""

from __future__ import annotations

import pulumi
import pytest


class Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(args)
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


@pytest.fixture(scope="module")
def mocked():
    """Mocks installed before the components module runs; registrations recorded with their
    parent and dependencies (URNs), as the engine would see them."""
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="aiinfra", stack="prod", preview=False)
    monitor = pulumi.runtime.settings.get_monitor()
    registered: dict[str, dict] = {}
    original = monitor.RegisterResource

    def record(request):
        registered[request.name] = {"type": request.type, "parent": request.parent,
                                    "dependencies": list(request.dependencies)}
        return original(request)

    monitor.RegisterResource = record
    yield mocks, registered
    monitor.RegisterResource = original


class Stub(pulumi.CustomResource):
    """Stand-in for a platform component (a Helm release in the real program). A custom resource:
    Pulumi expands a dependency on a component into its children, and a stub has none."""

    def __init__(self, name: str):
        super().__init__("test:platform:Stub", name, {})


@pulumi.runtime.test
def test_serving_components_depend_on_the_platform(mocked):
    from aiinfra.deploy.serving_component import TYPE_TOKEN, VllmDeployment, serving_components
    from conftest import load_stack

    mocks, registered = mocked
    built = load_stack("prod")
    platform = {n: Stub(n) for n in ("namespaces", "lustre", "gpu-operator", "network-operator", "lws", "kueue",
                                     "monitoring", "keda")}
    components = serving_components(built.cluster, built.plan, platform)
    assert sorted(c.args.name for c in components) == ["llama3-405b", "llama3-70b-chat", "llama3-8b-trt"]
    assert all(isinstance(c, VllmDeployment) for c in components)
    by_name = {c.args.name: c for c in components}
    base = {"namespaces", "lustre", "gpu-operator"}
    assert set(by_name["llama3-405b"].args.platform) == base | {"network-operator", "lws", "monitoring"}
    assert set(by_name["llama3-70b-chat"].args.platform) == base | {"monitoring", "keda"}
    assert set(by_name["llama3-8b-trt"].args.platform) == base

    names = list(by_name)
    platform_names = list(platform)

    def check(urns):
        comp_urn = dict(zip(names, urns[:len(names)], strict=True))
        platform_urn = dict(zip(platform_names, urns[2 * len(names):], strict=True))
        for name, comp in by_name.items():
            reg = registered[name]
            assert reg["type"] == TYPE_TOKEN
            child = registered[f"{name}-objects"]
            assert child["type"] == "kubernetes:yaml/v2:ConfigGroup"
            assert child["parent"] == comp_urn[name]
            wanted = {platform_urn[n] for n in comp.args.platform}
            assert wanted and wanted <= set(child["dependencies"]), name
            assert not {platform_urn[n] for n in platform_names} - wanted & set(child["dependencies"])
        group = next(r for r in mocks.resources if r.name == "llama3-405b-objects")
        kinds = sorted(o["kind"] for o in group.inputs["objs"])
        assert "LeaderWorkerSet" in kinds and "Secret" not in kinds

    urns = [by_name[n].urn for n in names] + [by_name[n].objects.urn for n in names] + [platform[n].urn for n in platform_names]
    return pulumi.Output.all(*urns).apply(check)


def test_the_objects_pulumi_applies_are_those_the_files_hold():
    import yaml

    from aiinfra.render.serving import objects
    from conftest import load_stack, render

    built = load_stack("prod")
    def key(o):
        return (o["kind"], o["metadata"]["name"])

    rendered: dict[str, list[dict]] = {}
    for path, text in render(built, only=["k8s-serving"]).items():
        parts = path.split("/")
        if len(parts) == 4 and parts[3] != "kustomization.yaml":
            rendered.setdefault(parts[2], []).extend(d for d in yaml.safe_load_all(text) if d)
    direct = objects(built.cluster, built.plan)
    assert rendered.keys() == direct.keys()
    for name in rendered:
        assert sorted(rendered[name], key=key) == sorted(direct[name], key=key)


def test_a_missing_platform_piece_is_named():
    from aiinfra.deploy.serving_component import platform_dependencies

    objs = [{"kind": "LeaderWorkerSet"}, {"kind": "ServiceMonitor"}]
    present, absent = platform_dependencies(objs, {"gpu-operator": object(), "lws": object()})
    assert present == ["gpu-operator", "lws"]
    assert absent == ["namespaces", "lustre", "network-operator", "monitoring"]
