"""Engine flags against the generated flag table (``cluster`` phase): every value aiinfra renders for
a flag with a fixed set of choices is one the pinned version accepts, a flag renders a value exactly
when it takes one, and each of a deployment's ``extra_args`` is a flag of the pinned version (with a
"did you mean"), with an accepted value, that does not repeat a flag aiinfra renders from the plan.

Whether the pinned version has each rendered flag at all is ``serving-engine-flag``
(:mod:`aiinfra.checks.serving`); both read :mod:`aiinfra.catalog.engines`, generated from the
released sources by scripts/engine_flags.py.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.catalog import engines as eng
from aiinfra.catalog.names import suggest
from aiinfra.checks.registry import validator
from aiinfra.errors import Problem
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.deployments import Arg, ResolvedDeployment, trtllm_serve_args, vllm_args, vllm_worker_args
from aiinfra.spec.cluster import Cluster


@validator("cluster")
def check_engine_flags(cluster: Cluster, plan: ClusterPlan) -> list[Problem]:
    problems: list[Problem] = []
    for s in plan.deployments:
        if s.version is None or not s.engine.knows(s.version):
            continue  # serving-engine-version says why
        rendered = rendered_args(s)
        problems += _rendered_values(s, rendered)
        problems += list(_extra_args(s, {s.engine.flag_name(a.flag) for a in rendered}))
    return problems


def rendered_args(s: ResolvedDeployment) -> list[Arg]:
    """The server arguments the renderers print for this deployment (API server and workers)."""
    if s.engine.name != "vllm":
        return trtllm_serve_args(s)
    workers = vllm_worker_args(s) if s.multi_node and s.dep.distributed_backend == "mp" else []
    return vllm_args(s) + workers


def _where(s: ResolvedDeployment) -> str:
    return f"{s.engine.title} {eng.format_version(s.version)} (image {s.image})"


def _rendered_values(s: ResolvedDeployment, args: list[Arg]) -> list[Problem]:
    out, seen = [], set()
    for a in args:
        fact = s.engine.fact(s.version, a.flag)
        if fact is None or (a.flag, a.value) in seen:
            continue  # a missing flag is serving-engine-flag
        seen.add((a.flag, a.value))
        problem = _value_problem(fact, a.flag, a.value)
        if problem:
            out.append(Problem(s.path + (a.key or ("image",)), "engine-flag-value",
                               f"{_where(s)}: {problem} (from {fact.source})",
                               hint="pin an engine version that accepts it, or change the key that sets it"))
    return out


def _value_problem(fact: eng.FlagFact, flag: str, value: str | None) -> str | None:
    if value is None and fact.takes_value is True:
        return f"{flag} needs a value"
    if value is not None and fact.takes_value is False:
        return f"{flag} takes no value, but is given '{value}'"
    if value is not None and fact.choices and value not in fact.choices:
        return f"{flag} does not accept '{value}'; it accepts {', '.join(fact.choices)}"
    return None


def _extra_args(s: ResolvedDeployment, rendered: set[str]) -> Iterator[Problem]:
    tokens = list(s.dep.extra_args)
    e, version = s.engine, s.version
    j = 0
    while j < len(tokens):
        token, key = tokens[j], s.path + ("extra_args", j)
        j += 1
        if not token.startswith("-"):
            yield Problem(key, "engine-flag-unknown", f"'{token}' is not a flag: {e.server_command} takes its model "
                          "from aiinfra, and every other argument is a flag", hint="start each argument with --")
            continue
        name = e.flag_name(token)
        fact = e.fact(version, name)
        if fact is None:
            known = e.flag_names(version)
            yield Problem(key, "engine-flag-unknown",
                          f"{_where(s)} has no flag {name}{suggest(name, known)}",
                          hint=f"use a flag of `{e.server_command}` at {eng.format_version(version)} "
                          "(aiinfra.catalog.engines lists them, from the released sources)")
            if "=" not in token and j < len(tokens) and not tokens[j].startswith("-"):
                j += 1  # its value, most likely
            continue
        value: str | None = token.partition("=")[2] if "=" in token else None
        if value is None and fact.takes_value and j < len(tokens) and (
                fact.takes_value is True or not tokens[j].startswith("-")):
            value = tokens[j]
            j += 1
        if name in rendered:
            yield Problem(key, "engine-extra-arg-conflict",
                          f"{name} is rendered from the blueprint; repeating it in extra_args would override "
                          "the planned value", hint="set the blueprint key that renders it instead")
            continue
        problem = _value_problem(fact, name, value)
        if problem:
            yield Problem(key, "engine-flag-value", f"{_where(s)}: {problem} (from {fact.source})",
                          hint="give the flag a value the pinned version accepts")
