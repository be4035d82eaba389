"""docs/blueprint.md, generated from the models' field descriptions (so it never drifts)."""

from __future__ import annotations

import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from aiinfra.spec.models import Blueprint


def _type_name(tp: object) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        base = args[0]
        meta = " ".join(str(m) for m in args[1:] if "WithJsonSchema" in type(m).__name__)
        name = _type_name(base)
        if "hostlist" in meta:
            return "hostlist"
        if "ipv4-cidr" in meta:
            return "CIDR"
        if "2TiB" in meta:
            return "size (e.g. 2TiB)"
        if "TB/s" in meta:
            return "rate (e.g. 1TB/s)"
        if "mlx5" in meta:
            return "device list"
        return name
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", "") for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[1])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    return getattr(tp, "__name__", str(tp))


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def visit(tp: object) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in seen:
                return
            seen.append(tp)
            for f in tp.model_fields.values():
                visit(f.annotation)
            return
        for a in typing.get_args(tp):
            visit(a)

    visit(root)
    return seen


def blueprint_reference() -> str:
    lines = [
        "# Blueprint reference",
        "",
        "Generated from the models in `src/aiinfra/spec/models.py` by `aiinfra schema --markdown`;",
        "a test keeps this page equal to the code. The blueprint lives in `stacks/Pulumi.<env>.yaml`",
        "under `config:` -> `aiinfra:cluster:`. Sizes and rates carry units (`2TiB`, `100PB`, `1TB/s`).",
        "Unknown keys are errors (with a \"did you mean\").",
        "",
    ]
    for model in _models(Blueprint):
        lines += [f"## {model.__name__}", ""]
        doc = (model.__doc__ or "").strip().splitlines()
        if doc and not doc[0].startswith("Base"):
            lines += [doc[0], ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            if field.is_required():
                default = "**required**"
            elif field.default_factory is not None:
                default = f"`{field.default_factory()!r}`"
            elif field.default is PydanticUndefined:
                default = ""
            else:
                default = f"`{field.default!r}`"
            desc = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{name}` | {_type_name(field.annotation)} | {default} | {desc} |")
        lines.append("")
    return "\n".join(lines)
