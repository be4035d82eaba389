"""The Jinja2 environment over templates/: StrictUndefined, stable filters, no autoescape surprises."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import jinja2
import yaml

from aiinfra.paths import templates_dir
from aiinfra.spec.hostlists import fold as fold_hostlist


def to_yaml(value: object) -> str:
    """Block-style YAML with sorted keys; ends without a trailing newline (templates add it)."""
    return yaml.dump(value, Dumper=StableDumper, sort_keys=True, default_flow_style=False, width=120).rstrip("\n")


def fold(hosts: Iterable[str]) -> str:
    """Fold host names into a hostlist expression: gpu001..gpu480 -> gpu[001-480]."""
    return fold_hostlist(hosts)


class StableDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Safe dumper; never emits aliases (manifests must read the same everywhere)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Multi-line strings (scripts, JSON files in ConfigMaps) as literal blocks: one line of the
    text is one line of the manifest, so a changed line is a one-line diff. PyYAML falls back to a
    quoted style where a block cannot hold the text (trailing spaces, control characters)."""
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


StableDumper.add_representer(str, _str)


@cache
def environment(root: Path | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root or templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["to_yaml"] = to_yaml
    env.filters["to_json"] = lambda v: json.dumps(v, sort_keys=True)
    env.filters["fold"] = fold
    env.filters["q"] = shell_quote
    return env


def shell_quote(value: object) -> str:
    """A shell word; values with '=' or '^' quoted too (NCCL_IB_HCA='=mlx5_0:1,...' reads better).
    The one quoting function of every rendered script (batch scripts, pod commands)."""
    text = str(value)
    quoted = shlex.quote(text)
    return f"'{text}'" if quoted == text and any(c in text for c in "=^") else quoted


def render_template(name: str, **context: object) -> str:
    return environment().get_template(name).render(**context)


def dump_yaml(value: object) -> str:
    return to_yaml(value) + "\n"


def dump_yaml_documents(values: list[object]) -> str:
    return "".join(f"---\n{dump_yaml(v)}" for v in values)


def dump_json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"
