"""Read a blueprint: file -> YAML (with the line of every key) -> typed Blueprint.

Every problem, from an unreadable file to a key of the wrong type, comes back as a
:class:`~aiinfra.errors.Problem` with the key path (and line) inside the file; all problems are
reported together. No user mistake escapes as a traceback. The stages after this one (checks,
the Cluster, the plan) are composed by :mod:`aiinfra.pipeline`.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from aiinfra.catalog.names import suggest
from aiinfra.errors import ROOT_KEY, BlueprintError, Level, Problem
from aiinfra.spec.models import Blueprint

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """YAML's safe loader without implicit timestamps: a blueprint has no dates, and ``2024-01-01``
    in a version field must stay the string the user wrote."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }


# Bounds on the document itself, before any of it is interpreted (alias bombs, runaway nesting).
MAX_EXPANDED_NODES = 200_000  # prod's blueprint is about 1,000 nodes; a 16k-node site a few thousand
MAX_DEPTH = 64
MAX_INT = 2**53  # larger integers are not counts or sizes of anything in a cluster (and lose precision)
MAX_NUMBER_CHARS = 64  # a number written longer than this is far past MAX_INT (and PyYAML's int() may refuse it)
MAX_STRING = 65_536  # one value: paths, hostlists, arguments are short; nothing in a blueprint is a document
MAX_TEXT = 8 * 2**20  # the whole file: prod's blueprint is ~30 KB


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
        raise BlueprintError(shown, [Problem((), "unreadable-file", "file not found",
                                                   hint="check the path; --stack ENV reads stacks/Pulumi.ENV.yaml")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BlueprintError(shown, [Problem((), "unreadable-file", f"cannot read: {exc}",
                                                   hint="the file must be readable UTF-8 text")]) from None
    return read_text(text, shown, env_from_path(path))


def read_text(text: str, file: str, env: str) -> Source:
    if len(text) > MAX_TEXT:
        raise BlueprintError(file, [Problem((), "blueprint-too-large",
                                            f"the file has {len(text):,} characters (limit {MAX_TEXT:,})", line=1,
                                            hint="a blueprint describes nodes with hostlists (gpu[001-512]); "
                                                 "keep data files out of it")])
    document, lines, problems = _parse_yaml(text)
    if problems:
        raise BlueprintError(file, problems)
    raw = _cluster_section(document)
    if isinstance(raw, Problem):
        raise BlueprintError(file, with_lines([raw], lines))
    plaintext = plaintext_secrets(document, lines)
    if plaintext:
        raise BlueprintError(file, plaintext)
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
        tagged = _explicit_tags(text)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, {}, [Problem((), "not-yaml", f"not valid YAML: {reason}", line=line or 1,
                                  hint="check the indentation and quoting near this line")]
    except RecursionError:
        return None, {}, [Problem((), "yaml-too-deep", f"the document nests deeper than {MAX_DEPTH} levels",
                                  hint="a blueprint is a few levels deep: look for a runaway '[' or '{'", line=1)]
    if node is None:
        return None, {}, [Problem((), "missing-key", "the file is empty", hint=f"add config: {ROOT_KEY}: ...",
                                  line=1)]
    shape = _check_shape(node)
    if shape:
        return None, {}, [shape]
    lines: dict[tuple, int] = {}
    found: list[Problem] = []
    _walk(node, (), lines, found)
    if found or tagged:
        return None, lines, found + [_at_line(p, lines) for p in tagged]
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:  # constructor errors (bad tags, values)
        mark = getattr(exc, "problem_mark", None)
        return None, lines, [Problem((), "not-yaml", f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
                                     line=mark.line + 1 if mark else 1, hint="write the value as plain text")]
    except (ValueError, OverflowError) as exc:  # PyYAML's own int()/float() past Python's limits
        return None, lines, [Problem((), "not-yaml", f"a value YAML cannot convert: {str(exc)[:120]}", line=1,
                                     hint="write numbers plainly (at most 2^53); quote anything else")]
    numbers = _check_numbers(document, (), lines)
    if numbers:
        return None, lines, numbers
    return document, lines, []


def _explicit_tags(text: str) -> list[Problem]:
    """Explicit YAML tags (``!!float 2.15.6``, ``!!binary``, ``!custom``) are refused: a blueprint's
    values are plain scalars, lists and mappings, and the models decide their types."""
    found = []
    for event in yaml.parse(text, Loader=_Loader):
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!" and not isinstance(event, yaml.DocumentStartEvent):
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            found.append(Problem((), "yaml-tag", f"explicit YAML tag '{shown}' is not allowed in a blueprint",
                                 line=event.start_mark.line + 1,
                                 hint=f"remove '{shown}' and write the value plainly (quote it to keep it a string)"))
            if len(found) >= 20:
                break
    return found


def _at_line(problem: Problem, lines: dict[tuple, int]) -> Problem:
    """Give a problem found by line alone the key path of the value on that line."""
    on_line = [path for path, line in lines.items() if line == problem.line and _relative(path) is not None]
    if not on_line:
        return problem
    path = _relative(max(on_line, key=len)) or ()
    return Problem(path, problem.id, problem.message, problem.level, problem.hint, problem.line)


def _check_shape(root: yaml.Node) -> Problem | None:
    """Refuse recursive aliases, alias expansions past MAX_EXPANDED_NODES and nesting past MAX_DEPTH.

    Aliases share nodes, so the expanded size is counted once per distinct node (memoised) and
    the check costs the size of the text, not of the expansion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    active: set[int] = set()

    def visit(node: yaml.Node) -> Problem | None:
        key = id(node)
        if key in size:
            return None
        if key in active:
            return Problem((), "yaml-alias", "a YAML alias refers to a node that contains it (a recursive alias)",
                           line=node.start_mark.line + 1, hint="replace the alias with the values it should hold")
        active.add(key)
        children = ([v for pair in node.value for v in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        total, deepest = 1, 0
        for child in children:
            problem = visit(child)
            if problem:
                return problem
            total += size[id(child)]
            deepest = max(deepest, depth[id(child)])
            if total > MAX_EXPANDED_NODES:
                return Problem((), "yaml-alias", f"the document expands to more than {MAX_EXPANDED_NODES:,} values "
                               "through its aliases", line=node.start_mark.line + 1,
                               hint="write the values out, or use fewer nested aliases")
        active.discard(key)
        size[key], depth[key] = total, deepest + 1
        if depth[key] > MAX_DEPTH:
            return Problem((), "yaml-too-deep", f"the document nests deeper than {MAX_DEPTH} levels",
                           line=node.start_mark.line + 1, hint="a blueprint is a few levels deep")
        return None

    return visit(root)


def _check_numbers(value: object, path: tuple, lines: dict[tuple, int]) -> list[Problem]:
    """Every number is finite and within MAX_INT (``.inf``, ``1e400``, ``2**63`` are refused here)."""
    found: list[Problem] = []
    stack = [(value, path)]
    while stack and len(found) < 20:
        node, at = stack.pop()
        if isinstance(node, dict):
            stack.extend((v, (*at, k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*at, i)) for i, v in enumerate(node))
        elif isinstance(node, (int, float)) and not isinstance(node, bool) and not abs(node) <= MAX_INT:
            found.append(_number_problem(at, node, lines))  # NaN fails the comparison too
    return found


def _number_problem(at: tuple, value: object, lines: dict[tuple, int]) -> Problem:
    rel = _relative(at)
    return Problem(rel if rel is not None else (), "number-out-of-range",
                   f"{_shown_number(value)} is not a usable number (limit: finite, at most 2^53)", line=_line_of(at, lines),
                   hint="give the real value; sizes and rates take a unit, e.g. 2TiB or 1TB/s")


def _line_of(at: tuple, lines: dict[tuple, int]) -> int | None:
    """The line of ``at``, or of its nearest parent with one (a value an alias or merge key brought)."""
    return next((lines[at[:i]] for i in range(len(at), 0, -1) if at[:i] in lines), None)


def _shown_number(value: object) -> str:
    """A number for a message, whatever its size (str() of an int past 4,300 digits raises)."""
    if isinstance(value, float):
        return f"{value:.3g}"
    assert isinstance(value, int)
    if value.bit_length() < 64:
        return str(value)
    return f"{'-' if value < 0 else ''}a number of about {int(value.bit_length() * 0.30103) + 1:,} digits"


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _scalar_problem(node: yaml.ScalarNode, path: tuple) -> Problem | None:
    """Bounds on one scalar as written, before YAML converts it: its length, and a number's digits."""
    rel = _relative(path)
    where = rel if rel is not None else ()
    if len(node.value) > MAX_STRING:
        return Problem(where, "value-too-long", f"a value of {len(node.value):,} characters (limit {MAX_STRING:,})",
                       line=node.start_mark.line + 1, hint="blueprint values are names, paths and arguments: "
                                                           "point to a file instead of pasting it")
    if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
        return Problem(where, "number-out-of-range",
                       f"a number written with {len(node.value):,} characters (limit: at most 2^53)",
                       line=node.start_mark.line + 1, hint="give the real value; quote it if it is a name")
    return None


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int], found: list[Problem]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        problem = _scalar_problem(node, path)
        if problem:
            found.append(problem)
    elif isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # '{a: 1}: 2' or '[a]: 1': Python cannot key on it
                rel = _relative(path)
                found.append(Problem(rel if rel is not None else (), "wrong-type",
                                    "a mapping key must be a plain name, not a list or mapping",
                                    hint="write the key as a plain word", line=key_node.start_mark.line + 1))
                continue
            problem = _scalar_problem(key_node, path)
            if problem:
                found.append(problem)
                continue
            key = key_node.value
            if key in seen:
                rel = _relative(path)
                found.append(Problem(rel + (key,) if rel is not None else (key,), "duplicate-key",
                                    f"key '{key}' appears twice in the same mapping", hint="keep one",
                                    line=key_node.start_mark.line + 1))
            seen.add(key)
            _walk(value_node, path + (key,), lines, found)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, found)


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


# ------------------------------------------------------------------ the stack's other config keys

#: The project's own config keys besides ``aiinfra:cluster`` are secrets (Pulumi.yaml declares each
#: ``secret: true``: ``aiinfra:kubeconfig``); so is a key of any namespace named like a credential.
SECRET_NAMESPACE = "aiinfra"
_CREDENTIAL_WORDS = {"password", "passwd", "secret", "token", "apikey", "credential", "credentials"}
_KEY_KINDS = {"api", "access", "private", "secret", "signing", "encryption"}  # <kind>Key, <kind>_key


@dataclass(frozen=True, order=True)
class StackKeyProblem(Problem):
    """A problem of a stack config key beside ``aiinfra:cluster``: its path is that key."""

    @property
    def key_path(self) -> str:
        return ".".join(str(p) for p in self.path)


def is_secret_config_key(key: str) -> bool:
    """``aiinfra:kubeconfig``, ``aws:secretKey``, ``gcp:accessToken``, ``db:password``: not ``aws:region``."""
    namespace, _, name = key.partition(":")
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)]
    named = bool(_CREDENTIAL_WORDS.intersection(words)) or (
        len(words) > 1 and words[-1] == "key" and words[-2] in _KEY_KINDS)
    return key != ROOT_KEY and (namespace == SECRET_NAMESPACE or named)


def _plaintext(value: object) -> bool:
    """Whether a config value holds anything Pulumi did not encrypt (a ``{secure: ...}`` entry)."""
    if isinstance(value, dict):
        return set(value) != {"secure"} and any(_plaintext(v) for v in value.values())
    if isinstance(value, list):
        return any(_plaintext(v) for v in value)
    return value is not None and value != ""


def plaintext_secrets(document: dict, lines: dict[tuple, int]) -> list[Problem]:
    """Stack config keys Pulumi keeps as secrets whose value the file holds in plaintext."""
    return [StackKeyProblem((key,), "plaintext-secret",
                            f"the stack file holds {key} in plaintext: it is a secret, and this file is "
                            "committed and read by every tool",
                            hint=f"pulumi config set --secret {key} ... (the file then holds "
                                 "{secure: <ciphertext>})",
                            line=lines.get(("config", key)))
            for key, value in document["config"].items()
            if isinstance(key, str) and is_secret_config_key(key) and _plaintext(value)]


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
            problem = Problem(path, "missing-key", f"required key '{path[-1]}' is missing",
                              hint=_field_hint(model, path, "add it"))
        else:
            message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
            if "input" in err and kind not in ("value_error",) and not isinstance(err["input"], (dict, list)):
                shown = repr(err["input"])
                message = f"{message} (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
            hint = _field_hint(model, path, "see docs/blueprint.md")
            value = err.get("input")
            if kind == "literal_error" and isinstance(value, str):
                allowed = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
                message += suggest(value, allowed)
                hint = f"use one of: {', '.join(allowed)}"
            elif kind == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
                hint = f"quote it, YAML reads {value} as a number: {path[-1]}: \"{value}\""
            problem = Problem(path, "wrong-type" if kind.endswith("_type") else "invalid-value", message, hint=hint)
        if path in merged and merged[path].id == problem.id and problem.id != "unknown-key":
            old = merged[path]
            if problem.message not in old.message:
                problem = Problem(path, old.id, f"{old.message}; or {problem.message}", hint=old.hint)
        merged[path] = problem
    return list(merged.values())


def _field_hint(model: type[BaseModel] | None, path: tuple, fallback: str) -> str:
    """The field's own description (what docs/blueprint.md says of it) as the fix hint."""
    field = model.model_fields.get(str(path[-1])) if model and path else None
    if field is None or not field.description:
        return fallback
    return f"{path[-1]}: {field.description}"


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
