"""Name lookup with aliases and "did you mean" suggestions, shared by every catalog table."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")
MAX_NAME = 200


def suggest(name: str, candidates: list[str] | tuple[str, ...] | Mapping[str, object]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or an empty string."""
    if len(name) > MAX_NAME:  # no name is that long; difflib's cost grows with the length
        return ""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def lookup(table: Mapping[str, T], aliases: Mapping[str, str], name: str, what: str) -> T:
    """Find ``name`` in ``table`` (or through ``aliases``); raise KeyError with a readable message."""
    key = name.strip().lower()
    key = aliases.get(key, key)
    if key in table:
        return table[key]
    known = sorted(table)
    raise KeyError(f"unknown {what} '{name}'{suggest(key, known + sorted(aliases))}; known: {', '.join(known)}")


def resolve_with(name: str, custom: Mapping[str, object] | None, build: Callable[[str, object], T],
                 builtin: Callable[[str], T], what: str) -> T:
    """A blueprint's reference: a key of its ``catalog.<what>`` (made an entry by ``build``) or a
    built-in name; the KeyError of an unknown one also lists the blueprint's own names."""
    if custom and name in custom:
        return build(name, custom[name])
    try:
        return builtin(name)
    except KeyError as exc:
        if custom:
            raise KeyError(f"{exc.args[0]}; the blueprint's catalog.{what}: {', '.join(sorted(custom))}") from None
        raise
