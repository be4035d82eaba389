"""Read a blueprint: file -> YAML (with the line of every key) -> typed Blueprint.

Every problem, from an unreadable file to a key of the wrong type, comes back as a
:class:`~aiinfra.errors.Problem` with the key path (and line) inside the file; all problems are
reported together. No user mistake escapes as a traceback. The stages after this one (checks,
the Cluster, the plan) are composed by :mod:`aiinfra.pipeline`.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from aiinfra.catalog.names import suggest
from aiinfra.errors import ROOT_KEY, BlueprintError, Level, Problem
from aiinfra.spec.models import Blueprint

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Source:
    """A blueprint as read: the value of ``aiinfra:cluster``, where it came from, its key lines."""

    raw: object
    file: str
    env: str
    lines: dict[tuple, int]


def env_from_path(path: Path) -> str:
    """``stacks/Pulumi.prod.yaml`` -> ``prod``."""
    name = path.name
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.removeprefix("Pulumi.")


def read_file(path: Path, display: str | None = None) -> Source:
    """Read one blueprint file, or raise BlueprintError."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BlueprintError(shown, [Problem((), "unreadable-file", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BlueprintError(shown, [Problem((), "unreadable-file", f"cannot read: {exc}")]) from None
    return read_text(text, shown, env_from_path(path))


def read_text(text: str, file: str, env: str) -> Source:
    document, lines, problems = _parse_yaml(text)
    if problems:
        raise BlueprintError(file, problems)
    raw = _cluster_section(document)
    if isinstance(raw, Problem):
        raise BlueprintError(file, [raw])
    return Source(raw, file, env, lines)


def to_blueprint(source: Source) -> Blueprint:
    """The typed Blueprint of a source (types, units, unknown keys), or raise BlueprintError."""
    try:
        return Blueprint.model_validate(source.raw)
    except ValidationError as exc:
        raise BlueprintError(source.file, with_lines(_from_pydantic(exc), source.lines)) from None


def raise_errors(source: Source, found: list[Problem]) -> None:
    """Raise BlueprintError with every problem (errors first) if any of ``found`` is an error."""
    if any(p.level is Level.ERROR for p in found):
        raise BlueprintError(source.file, with_lines(sorted(found, key=_order), source.lines))


def _order(p: Problem) -> tuple:
    return (p.level is not Level.ERROR, tuple(str(x) for x in p.path), p.id)


# ------------------------------------------------------------------ YAML with line numbers


def _parse_yaml(text: str) -> tuple[object, dict[tuple, int], list[Problem]]:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, {}, [Problem((), "not-yaml", f"not valid YAML: {reason}", line=line)]
    if node is None:
        return None, {}, [Problem((), "missing-key", "the file is empty", hint=f"add config: {ROOT_KEY}: ...")]
    lines: dict[tuple, int] = {}
    dups: list[Problem] = []
    _walk(node, (), lines, dups)
    if dups:
        return None, lines, dups
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:  # constructor errors (bad timestamps, tags)
        return None, lines, [Problem((), "not-yaml", f"not valid YAML: {exc}")]
    return document, lines, []


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int], dups: list[Problem]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                rel = _relative(path)
                dups.append(Problem(rel + (key,) if rel is not None else (key,), "duplicate-key",
                                    f"key '{key}' appears twice in the same mapping", hint="keep one",
                                    line=key_node.start_mark.line + 1))
            seen.add(key)
            _walk(value_node, path + (key,), lines, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, dups)


def _relative(path: tuple) -> tuple | None:
    """A document path -> the path below ``config.aiinfra:cluster`` (None when outside it)."""
    if path[:2] == ("config", ROOT_KEY):
        return path[2:]
    return None


def with_lines(problems: list[Problem], lines: dict[tuple, int]) -> list[Problem]:
    out = []
    for p in problems:
        if p.line is not None:
            out.append(p)
            continue
        path = ("config", ROOT_KEY, *p.path)
        while path and path not in lines:
            path = path[:-1]
        out.append(Problem(p.path, p.id, p.message, p.level, p.hint, lines.get(path)))
    return out


def _cluster_section(document: object) -> object:
    if not isinstance(document, dict):
        return Problem((), "wrong-type", "the file is not a Pulumi stack file (a mapping with a 'config' key)",
                       hint=f"write config: {ROOT_KEY}: ...")
    config = document.get("config")
    if not isinstance(config, dict):
        return Problem((), "missing-key", "no 'config' mapping at the top of the file",
                       hint=f"write config: {ROOT_KEY}: ...")
    if ROOT_KEY not in config:
        near = suggest(ROOT_KEY, [str(k) for k in config])
        return Problem((), "missing-key", f"config has no '{ROOT_KEY}' key{near}",
                       hint=f"put the environment under config: {ROOT_KEY}:")
    return config[ROOT_KEY]


# ------------------------------------------------------------------ pydantic errors -> Problems


def _from_pydantic(exc: ValidationError) -> list[Problem]:
    merged: dict[tuple, Problem] = {}
    for err in exc.errors(include_url=False):
        path, model = _key_path(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(path[-1])
            fields = list(model.model_fields) if model else []
            problem = Problem(path, "unknown-key", f"unknown key '{key}'{suggest(key, fields)}",
                              hint=f"allowed here: {', '.join(fields)}" if fields else "")
        elif kind == "missing":
            problem = Problem(path, "missing-key", f"required key '{path[-1]}' is missing")
        else:
            message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
            if "input" in err and kind not in ("value_error",) and not isinstance(err["input"], (dict, list)):
                message = f"{message} (got {err['input']!r})"
            problem = Problem(path, "wrong-type" if kind.endswith("_type") else "invalid-value", message)
        if path in merged and merged[path].id == problem.id and problem.id != "unknown-key":
            old = merged[path]
            if problem.message not in old.message:
                problem = Problem(path, old.id, f"{old.message}; or {problem.message}")
        merged[path] = problem
    return list(merged.values())


def _key_path(loc: tuple) -> tuple[tuple, type[BaseModel] | None]:
    """Keep the parts of a pydantic location that are real keys; drop union-member tags.

    Returns the path and the model that owns its last key (for "did you mean").
    """
    path: list = []
    current: object = Blueprint
    owner: type[BaseModel] | None = Blueprint
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            owner = current
            if part in current.model_fields:
                path.append(part)
                current = current.model_fields[part].annotation
                continue
            path.append(part)  # an unknown key (extra_forbidden) — stop walking
            current = None
            continue
        origin = typing.get_origin(current)
        if origin in (list, tuple) and isinstance(part, int):
            path.append(part)
            current = typing.get_args(current)[0]
        elif origin is dict and isinstance(part, str):
            path.append(part)
            current = typing.get_args(current)[1]
        elif isinstance(part, int) or current is None:
            path.append(part)
        # otherwise: a union member tag such as 'int' or "literal['auto']" — skip it
    return tuple(path), owner


def _unwrap(tp: object) -> object:
    """Strip Annotated/Optional around one model or container type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            containers = [m for m in members if typing.get_origin(m) in (list, dict, tuple)]
            if len(models) == 1:
                tp = models[0]
                continue
            if len(containers) == 1:
                tp = containers[0]
                continue
            return tp
        return tp
