"""Property: whatever a user does to a blueprint, aiinfra answers with problems, never a traceback."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data, build_text
from aiinfra.render import render_all
from conftest import ROOT

DEV = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["gpu[01-", "10.0.0.0/33", "2TiB", "auto", "gpu[1-99999]", "h100-80gb", "mgmt01", "-1"]),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*prefix, i))


ALL_PATHS = [p for p in paths(DEV) if len(p) >= 2]


def mutate(doc, path, action, value):
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = value
    elif action == "add" and isinstance(parent[key], dict):
        parent[key]["x" if not isinstance(value, str) or not value else value] = value
    elif action == "add" and isinstance(parent[key], list):
        parent[key].append(value)
    else:
        parent[key] = value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(ALL_PATHS), st.sampled_from(["delete", "replace", "add"]), ODD_VALUES),
        min_size=1, max_size=3,
    )
)
def test_mutated_blueprint_never_raises_anything_but_problems(edits):
    doc = copy.deepcopy(DEV)
    for path, action, value in edits:
        try:
            mutate(doc, path, action, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed this path
    text = yaml.safe_dump(doc)
    try:
        build_text(text, "fuzz.yaml", "fuzz")
    except BlueprintError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.format("fuzz.yaml").startswith("fuzz.yaml")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_is_never_a_traceback(text):
    try:
        build_text(text, "x.yaml", "x")
    except BlueprintError as exc:
        assert exc.problems


# ------------------------------------------------------------------ validate is the whole gate
#
# Plausible edits of the dev and prod blueprints (sizes, indices, shares, versions, layouts): whatever
# build_data accepts, every renderer must render. A renderer that raises on such a blueprint found a
# refusal missing from the checks (tests/spec/test_validate_is_the_gate.py names the known ones).

DELETE = object()  # the edit removes the key


def cluster_blueprint(env: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())["config"]["aiinfra:cluster"]


def _index(items: list[dict], name: str) -> int:
    return next(i for i, item in enumerate(items) if item["name"] == name)


def _hostlist(prefix: str, max_nodes: int) -> st.SearchStrategy[str]:
    return st.integers(1, max_nodes).map(lambda n: f"{prefix}[001-{n:03d}]" if n > 1 else f"{prefix}001")


def edit_knobs(bp: dict) -> list[tuple[tuple, st.SearchStrategy]]:
    """(key path, values) of the edits the gate property tries on ``bp``."""
    groups = bp["node_groups"]
    train, serve = _index(groups, "gpu-train"), _index(groups, "gpu-serve")
    share = st.sampled_from([0.0, 0.125, 0.25, 0.5, 0.75, 0.875, 1.0])
    knobs: list[tuple[tuple, st.SearchStrategy]] = [
        (("versions", "slurm"), st.sampled_from(["latest", "24", "24.05", "24.11.5", "23.02.7", "25.05.1", "v24.11"])),
        (("versions", "kubernetes"), st.sampled_from(["latest", "1", "1.29.14", "1.30.9", "1.31.7", "v1.32.3"])),
        (("kubernetes", "queue_gpu_shares"), st.fixed_dictionaries({"serving": share, "training": share})),
        (("kubernetes", "api_vip"), st.sampled_from([DELETE, "10.10.0.5", "api.k8s.example.org"])),
        (("kubernetes", "api_port"), st.sampled_from([443, 6443, 65535])),
        (("kubernetes", "lustre_volumes"), st.sampled_from(["static", "csi"])),
        (("kubernetes", "lustre_csi_driver"), st.sampled_from([DELETE, "lustre.csi.example.org"])),
        (("kubernetes", "cni"), st.sampled_from(["calico", "cilium"])),
        (("kubernetes", "rdma"), st.sampled_from(["shared", "sriov"])),
        (("kubernetes", "mig_strategy"), st.sampled_from(["none", "single", "mixed"])),
        (("kubernetes", "gpu_driver"), st.sampled_from(["host", "operator"])),
        (("kubernetes", "rdma_shared_max_pods"), st.integers(1, 1000)),
        (("networks", "ipoib", "rail_prefix"), st.integers(8, 30)),
        (("networks", "ipoib", "cidr"), st.sampled_from(["10.64.0.0/13", "10.20.0.0/21", "10.64.0.0/20",
                                                          "172.16.0.0/12"])),
        (("networks", "management", "cidr"), st.sampled_from(["10.0.0.0/16", "10.10.0.0/24", "10.0.0.0/21"])),
        (("fabric", "su_nodes"), st.integers(1, 64)),
        (("node_groups", train, "hosts"), _hostlist("trn", 600)),
        (("node_groups", serve, "hosts"), _hostlist("srv", 80)),
        (("node_groups", train, "address_index"), st.one_of(st.just(DELETE), st.integers(0, 70000))),
        (("node_groups", serve, "address_index"), st.one_of(st.just(DELETE), st.integers(0, 70000))),
        (("training", 0, "nodes"), st.integers(1, 600)),
        (("training", 0, "tp"), st.sampled_from(["auto", 1, 2, 4, 8, 16])),
        (("training", 0, "pp"), st.sampled_from(["auto", 1, 2, 4, 8])),
        (("training", 0, "micro_batch"), st.integers(1, 8)),
        (("training", 0, "global_batch"), st.sampled_from([8, 64, 1920, 4096])),
        (("training", 0, "seq_len"), st.sampled_from([2048, 8192, 131072])),
        (("serving", 0, "tp"), st.sampled_from(["auto", 1, 2, 4, 8])),
        (("serving", 0, "replicas"), st.sampled_from(["auto", 1, 2, 8, 64])),
        (("serving", 0, "max_model_len"), st.sampled_from([2048, 8192, 131072])),
        (("serving", 0, "gpu_memory_utilization"), st.floats(0.5, 0.99)),
    ]
    if len(bp["training"]) > 1:
        knobs.append((("training", 1, "nodes"), st.integers(1, 64)))
    return knobs


ENVS = {env: (cluster_blueprint(env), edit_knobs(cluster_blueprint(env))) for env in ("dev", "prod")}


@st.composite
def mutants(draw) -> tuple[str, dict]:
    env = draw(st.sampled_from(sorted(ENVS)))
    bp, knobs = ENVS[env]
    doc = copy.deepcopy(bp)
    for path, values in draw(st.lists(st.sampled_from(knobs), min_size=1, max_size=3)):
        value = draw(values)
        try:
            mutate(doc, path, "delete" if value is DELETE else "replace", value)
        except (KeyError, IndexError):
            continue  # nothing to delete
    return env, doc


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutants())
def test_every_blueprint_validate_accepts_renders(mutant):
    env, doc = mutant
    try:
        built = build_data(doc, f"{env}.yaml", env)
    except BlueprintError:
        return  # refused with problems: the other property covers their form
    render_all(built.cluster, built.plan)


# ------------------------------------------------------------------ kinds the 10,000-case fuzz run found
# (benchmarks/fuzz.py, docs/benchmarks.md#fuzz): each is a refusal with a line, not a crash or a hang.

DEV_TEXT = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()


def _problems(text: str) -> list:
    try:
        build_text(text, "f.yaml", "dev")
    except BlueprintError as exc:
        return exc.problems
    raise AssertionError("accepted")


def _with_value(key: str, written: str) -> str:
    """dev's blueprint with the value of its first ``key:`` line replaced by ``written`` (as typed)."""
    head, sep, rest = DEV_TEXT.partition(f"\n    {key}: ")
    assert sep, key
    return head + sep + written + "\n" + rest.split("\n", 1)[1]


@pytest.mark.parametrize("written", [
    "1" + "0" * 400,  # past float range: formatting it raised OverflowError
    "9" * 5000,  # past Python's 4,300-digit int() limit: PyYAML's constructor raised ValueError
    "0b" + "1" * 20_000,  # the same in binary
    ":".join(["59"] * 400),  # and in YAML 1.1's base 60
])
def test_numbers_past_any_limit_are_refused_on_their_line(written):
    text = _with_value("description", written)
    (problem,) = _problems(text)
    assert problem.id == "number-out-of-range" and problem.key_path == "aiinfra:cluster.description"
    assert problem.line == text[: text.index(written)].count("\n") + 1
    assert len(problem.format("f.yaml")) < 400


def test_a_mapping_key_past_the_number_limit_is_refused():
    text = _with_value("description", "{? " + "9" * 5000 + " : 1}")
    assert [p.id for p in _problems(text)] == ["number-out-of-range"]


def test_a_value_of_megabytes_is_refused_before_any_check_reads_it():
    text = _with_value("description", "'" + "x" * 3_000_000 + "'")
    (problem,) = _problems(text)
    assert (problem.id, problem.key_path) == ("value-too-long", "aiinfra:cluster.description")


def test_a_file_of_many_megabytes_is_refused_whole():
    (problem,) = _problems(DEV_TEXT + "# " + "x" * 9 * 2**20 + "\n")
    assert problem.id == "blueprint-too-large" and problem.line == 1


def test_a_value_echoed_in_a_message_stays_on_one_line():
    text = _with_value("description", "ok").replace("name: dev", 'name: "line\\nbreak"', 1)
    shown = [p.format("f.yaml") for p in _problems(text)]
    assert shown and all("\n" not in s for s in shown) and any("line\\nbreak" in s for s in shown)
