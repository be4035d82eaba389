"""Helpers of the serving tests: rendered objects in memory, blueprint variants, fixtures."""

from __future__ import annotations

import copy
from functools import cache

import yaml

from conftest import ROOT, load_stack


def stack_data(env: str) -> dict:
    """The ``aiinfra:cluster`` value of a stack, as plain data to modify."""
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{env}.yaml").read_text())
    return copy.deepcopy(doc["config"]["aiinfra:cluster"])


def load_variant(data: dict, env: str = "prod"):
    from aiinfra.pipeline import build_data

    return build_data(data, f"stacks/Pulumi.{env}.yaml", env)


def problems_of(data: dict, env: str = "prod") -> list:
    """Every problem of a modified blueprint (errors raise BlueprintError; its problems are returned)."""
    from aiinfra.errors import BlueprintError

    try:
        return list(load_variant(data, env).warnings)
    except BlueprintError as exc:
        return exc.problems


def serving_objects(built) -> dict[str, list[dict]]:
    from aiinfra.render.serving import objects

    return objects(built.cluster, built.plan)


def find(objs: list[dict], kind: str) -> dict:
    hits = [o for o in objs if o["kind"] == kind]
    assert len(hits) == 1, f"expected one {kind}, found {len(hits)}"
    return hits[0]


@cache
def prod_objects() -> dict[str, list[dict]]:
    return serving_objects(load_stack("prod"))


@cache
def prod_plan_json() -> dict:
    """What ``aiinfra plan --json --stack prod`` prints, by deployment name."""
    import json

    data = json.loads(json.dumps(load_stack("prod").plan.to_dict()))
    return {s["name"]: s for s in data["serving"]}


def model_of(container: dict) -> str | None:
    """The positional MODEL of ``vllm serve MODEL --flags``: the first argument, if it is not a flag."""
    args = list(container.get("args") or [])
    return args[0] if args and not args[0].startswith("--") else None


def args_of(container: dict) -> dict[str, str | None]:
    """``--flag value`` / ``--flag`` pairs of a container's args (a leading positional MODEL aside)."""
    out: dict[str, str | None] = {}
    tokens = list(container.get("args") or [])
    i = 1 if model_of(container) else 0
    while i < len(tokens):
        flag = tokens[i]
        if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            out[flag] = tokens[i + 1]
            i += 2
        else:
            out[flag] = None
            i += 1
    return out


def warm_crd_index() -> None:
    """Build tests/k8s_schema's CRD index with libyaml (the CRDs are ~100k lines: the pure-Python
    loader takes ~35 s); the index is cached, so every later validation uses it."""
    import k8s_schema

    original = k8s_schema.yaml.safe_load_all
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    k8s_schema.yaml.safe_load_all = lambda stream: yaml.load_all(stream, Loader=loader)
    try:
        k8s_schema.crd_index()
    finally:
        k8s_schema.yaml.safe_load_all = original
