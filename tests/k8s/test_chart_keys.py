"""The Helm values aiinfra renders use only keys the pinned chart has (src/aiinfra/catalog/data/chart_keys/,
extracted by scripts/chart_keys.py), and `aiinfra validate` refuses one it lacks."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aiinfra.catalog.charts import CHART_KEYS_DIR, CHARTS, chart_keys, split_key_path
from aiinfra.catalog.platform import COMPONENTS
from aiinfra.checks.charts import unknown_keys
from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data
from aiinfra.plan import platform_values
from conftest import ROOT, load_stack, render


def _script():
    spec = importlib.util.spec_from_file_location("chart_keys_script", ROOT / "scripts" / "chart_keys.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def blueprint(env: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())["config"]["aiinfra:cluster"]


def rendered_values(env: str) -> dict[str, tuple[str, dict]]:
    """values file -> (chart key, values), for every chart values file the render prints."""
    rendered = render(load_stack(env))
    out = {f"k8s/{c.name}/values.yaml": (c.chart, yaml.safe_load(rendered[f"k8s/{c.name}/values.yaml"]))
           for c in COMPONENTS if f"k8s/{c.name}/values.yaml" in rendered}
    cni = load_stack(env).cluster.blueprint.kubernetes.cni
    out["k8s-hosts/cni-values.yaml"] = ({"calico": "tigera-operator", "cilium": "cilium"}[cni],
                                        yaml.safe_load(rendered["k8s-hosts/cni-values.yaml"]))
    return out


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_rendered_values_file_uses_only_keys_of_the_pinned_chart(env):
    pins = load_stack(env).cluster.blueprint.versions.charts
    files = rendered_values(env)
    assert len(files) >= 7
    for path, (key, values) in files.items():
        keys = chart_keys(key, pins[key])
        assert keys is not None, f"{path}: no key list for {key} {pins[key]}"
        assert not unknown_keys(keys, values), (path, unknown_keys(keys, values))


def test_the_values_the_check_sees_are_the_values_the_renderer_prints():
    built = load_stack("prod")
    rendered = render(built)
    for name, build in platform_values.CHART_VALUES.items():
        assert yaml.safe_load(rendered[f"k8s/{name}/values.yaml"]) == build(built.cluster), name


def test_a_misspelt_values_key_is_refused_with_the_key_it_meant(monkeypatch):
    def kueue_typo(cluster):
        return {"enablePrometeus": True, "controllerManager": {"replicas": 2}}

    monkeypatch.setitem(platform_values.CHART_VALUES, "kueue", kueue_typo)
    with pytest.raises(BlueprintError) as exc:
        build_data(blueprint("dev"), "dev.yaml", "dev")
    (problem,) = [p for p in exc.value.problems if p.id == "chart-value-unknown"]
    assert problem.path == ("versions", "charts", "kueue")
    assert "`enablePrometeus`" in problem.message and "did you mean 'enablePrometheus'" in problem.message


def test_the_old_gpu_operator_runtime_value_is_not_a_key_of_the_pinned_chart():
    keys = chart_keys("gpu-operator", "v25.10.0")
    found = unknown_keys(keys, {"operator": {"defaultRuntime": "containerd"}, "toolkit": {"enabled": True}})
    assert [path for path, _ in found] == [("operator", "defaultRuntime")]


def test_free_form_maps_and_empty_default_maps_accept_any_key():
    keys = chart_keys("gpu-operator", "v25.10.0")
    values = {
        "operator": {"annotations": {"example.org/team": "ml"},  # free-form, with a default of its own
                     "resources": {"limits": {"cpu": "1"}}},
        "daemonsets": {"labels": {"example.org/x": "y"}},  # default {}
        "node-feature-discovery": {"worker": {"resources": {"requests": {"cpu": "10m"}}}},  # subchart
    }
    assert unknown_keys(keys, values) == []
    assert unknown_keys(keys, {"daemonsets": {"tolerations": [], "labls": {}}})  # a closed map still checks


def test_a_pinned_version_without_a_key_list_is_refused():
    bp = blueprint("dev")
    bp["versions"]["charts"]["keda"] = "2.17.1"
    with pytest.raises(BlueprintError) as exc:
        build_data(bp, "dev.yaml", "dev")
    assert ("chart-keys-missing", ("versions", "charts", "keda")) in {(p.id, p.path) for p in exc.value.problems}


def test_every_key_list_names_its_source_and_the_sha256_of_what_it_read():
    files = sorted(CHART_KEYS_DIR.glob("*.txt"))
    assert files
    for path in files:
        header = [line for line in path.read_text().splitlines() if line.startswith("#")]
        assert re.search(r"from https://\S+ \(commit [0-9a-f]{40}\)|from https://\S+\.tgz", "\n".join(header)), path
        assert re.search(r"sha256 of the chart's values\.yaml: [0-9a-f]{64}", "\n".join(header)), path
        key, version = next((k, path.stem.removeprefix(k + "-")) for k in CHARTS if path.stem.startswith(k + "-"))
        assert chart_keys(key, version), path


# ------------------------------------------------------------------ the script

def test_the_script_lists_value_paths_template_reads_schema_properties_and_open_maps(tmp_path):
    script = _script()
    values = {"a": {"b": 1, "empty": {}}, "annotations": {"k": "v"}, "sub": {"x": 1}}
    source = script.ChartSource("test", {
        "values.yaml": yaml.safe_dump(values).encode(),
        "values.schema.json": b'{"properties": {"s": {"type": "object", "properties": {"t": {}}}}}',
        "Chart.yaml": yaml.safe_dump({"dependencies": [{"name": "sub", "version": "1.*"},
                                                       {"name": "local", "alias": "loc"}]}).encode(),
        "templates/x.yaml": b"{{ .Values.a.commented.key }} {{ .Values.a.empty.anything }}"
                            b" {{ toYaml .Values.passed | nindent 2 }}",
    }, {"local": script.ChartSource("local", {"values.yaml": b"inner: {deep: 1}\n"})})
    text = script.render_file("demo", "1.0.0", source)
    lines = {split_key_path(line) for line in text.splitlines() if not line.startswith("#")}
    assert {("a",), ("a", "b"), ("a", "empty"), ("a", "commented"), ("a", "commented", "key")} <= lines
    assert ("a", "empty", "anything") not in lines  # below a {} default: already open
    assert ("annotations", "*") in lines and ("annotations", "k") not in lines
    assert {("s",), ("s", "t"), ("s", "*")} <= lines  # schema object that allows other keys
    assert ("sub", "*") in lines and "subchart sub 1.* is not in the source" in text
    assert {("loc", "inner"), ("loc", "inner", "deep")} <= lines
    assert ("passed", "*") in lines


def test_the_committed_lists_equal_the_script_output_where_the_sources_are_here(tmp_path):
    mirror = Path("/work/.mirror")
    if not (mirror / "NVIDIA+gpu-operator" / "repo").is_dir():
        pytest.skip("no local git sources of the charts (scripts/chart_keys.py --git-root)")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "chart_keys.py"), "--git-root", str(mirror),
                           "--output", str(tmp_path), "gpu-operator", "network-operator", "kueue"],
                          capture_output=True, text=True, timeout=300)
    produced = sorted(tmp_path.glob("*.txt"))
    assert produced, done.stderr
    for path in produced:
        assert path.read_text() == (CHART_KEYS_DIR / path.name).read_text(), path.name


@pytest.mark.parametrize("version", ["v25.10.0" * 200, "../../../../etc/passwd", "v25.10.0/../lws-0.10.0"])
def test_a_chart_version_is_looked_up_not_joined_into_a_path(version):
    """A version is user input: too long for a file name, or a path out of the lists' folder
    (found by benchmarks/fuzz.py: OSError 'File name too long')."""
    bp = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["aiinfra:cluster"]
    bp["versions"]["charts"]["gpu-operator"] = version
    with pytest.raises(BlueprintError) as exc:
        build_data(bp, "dev.yaml", "dev")
    assert "chart-keys-missing" in {p.id for p in exc.value.problems}
    assert chart_keys("gpu-operator", version) is None
