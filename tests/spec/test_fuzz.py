"""Property: whatever a user does to a blueprint, aiinfra answers with problems, never a traceback."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_text
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
