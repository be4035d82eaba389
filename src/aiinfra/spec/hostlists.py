"""Hostlist expressions, fast: folding ``gpu001 .. gpu480`` into ``gpu[001-480]``, and back.

ClusterShell's ``NodeSet.fromlist`` parses every name as a nodeset expression, which costs about
25 µs a name: at 32,768 nodes most of a render went there, folding lists whose names are
plain ``<prefix><digits>``. :func:`fold` handles exactly those names itself and gives the text
``str(NodeSet.fromlist(names))`` gives (ClusterShell 1.10: patterns in sorted order, one range per
run of consecutive numbers, brackets from two names on; the tests compare both on random lists).
Anything else (several numbers in a name, brackets, mixed zero padding within one prefix) goes to
ClusterShell, so the answer never depends on which path folded it. :func:`expand` does the same the
other way for the ``prefix[lo-hi,...]`` expressions blueprints write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ClusterShell.NodeSet import NodeSet

_BRACKETED = re.compile(r"([A-Za-z][A-Za-z_-]*)\[([0-9,-]+)\]")
_PLAIN = re.compile(r"([A-Za-z][A-Za-z_-]*)(\d+)|([A-Za-z][A-Za-z_-]*)")


def _ranges(numbers: list[str]) -> str | None:
    """The ranges of one prefix's digit strings, or None when ClusterShell's padding rules are needed."""
    widths = {len(n) for n in numbers}
    padded = any(len(n) > 1 and n[0] == "0" for n in numbers)
    if padded and len(widths) > 1:
        return None
    width = widths.pop() if padded else 0
    values = sorted({int(n) for n in numbers})
    parts = []
    start = prev = values[0]
    for v in values[1:]:
        if v != prev + 1:
            parts.append(f"{start:0{width}d}" if start == prev else f"{start:0{width}d}-{prev:0{width}d}")
            start = v
        prev = v
    parts.append(f"{start:0{width}d}" if start == prev else f"{start:0{width}d}-{prev:0{width}d}")
    text = ",".join(parts)
    return f"[{text}]" if len(values) > 1 else text


def fold(hosts: Iterable[str]) -> str:
    """The hostlist expression of ``hosts`` (any order, duplicates ignored), as ClusterShell folds it."""
    names = list(hosts)
    by_prefix: dict[str, list[str]] = {}
    bare: set[str] = set()
    match = _PLAIN.fullmatch
    for name in names:
        m = match(name)
        if m is None:
            return str(NodeSet.fromlist(names))
        if m.group(3) is not None:
            bare.add(name)
        else:
            by_prefix.setdefault(m.group(1), []).append(m.group(2))
    patterns: list[tuple[str, str]] = [(name, name) for name in bare]
    for prefix, numbers in by_prefix.items():
        ranges = _ranges(numbers)
        if ranges is None:
            return str(NodeSet.fromlist(names))
        patterns.append((f"{prefix}%s", prefix + ranges))
    return ",".join(text for _pattern, text in sorted(patterns))


def expand(hostlist: str) -> tuple[str, ...]:
    """The host names of ``hostlist`` in ClusterShell's order (``tuple(NodeSet(hostlist))``): a name, or one
    prefix with bracketed ranges whose bounds all have one width, directly; anything else by ClusterShell
    (which raises NodeSetParseError on a malformed expression)."""
    if _PLAIN.fullmatch(hostlist):
        return (hostlist,)
    m = _BRACKETED.fullmatch(hostlist)
    if m is not None:
        prefix, numbers = m.group(1), set()
        widths = set()
        for part in m.group(2).split(","):
            low, sep, high = part.partition("-")
            if not low or (sep and not high) or "-" in high:
                break
            high = high or low
            widths.update((len(low), len(high)))
            if int(low) > int(high):
                break
            numbers.update(range(int(low), int(high) + 1))
        else:
            if len(widths) == 1:
                width = widths.pop()
                return tuple(f"{prefix}{n:0{width}d}" for n in sorted(numbers))
    return tuple(NodeSet(hostlist))
