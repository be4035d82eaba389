"""Fuzz the blueprint pipeline: seeded mutants of stacks/*.yaml through validate, then render.

Run:  .venv/bin/python benchmarks/fuzz.py [--profile short|full] [--cases N] [--seed S] [--jobs J]
                                          [--timeout 10] [--memory-limit-mib 2048] [--report FILE]
                                          [--out /tmp/aiinfra-fuzz]
      .venv/bin/python benchmarks/fuzz.py --replay /tmp/aiinfra-fuzz/case-00042.yaml

Each case is one of the stacks' blueprints (dev weighted 3:1 for speed) with a few seeded
mutations. Structured ones edit the parsed document at a random key path (replace with an odd
value, delete, rename, duplicate, add, copy from another path, or put a raw YAML fragment there:
explicit tags, anchors and aliases, recursive aliases, alias-expansion bombs, deep nesting, odd
scalars); textual ones edit the dumped text (BOM, tabs, duplicated keys, control characters,
truncation, CRLF, extra documents, huge documents). Case ``i`` of seed ``S`` depends on nothing
else, so any case can be regenerated alone.

Every case runs ``pipeline.build_text`` and, when that accepts it, ``render.render_all`` — the
property "validate ok => render ok". Outcomes:

  ok         built and rendered
  refused    BlueprintError with problems, each formatted ``file:line?: key.path: level[id]: message``
             (problems without a hint or a line are counted, not failures)
  malformed  refused, but a problem breaks that format (or the error carries no error-level problem)
  crash      any other exception from build_text (or the worker process died)
  render     build_text accepted the blueprint and render_all raised
  hang       over --timeout seconds (SIGALRM in the worker; past timeout + 5 s the parent kills it)
  memory     MemoryError, or peak RSS of the case over --memory-limit-mib; the worker's address space
             is capped (RLIMIT_AS) at its size after import plus that limit, so a bomb cannot take
             the machine down

Workers are forked processes (aiinfra imported once, before the fork), one case at a time each,
replaced after a hang, a memory failure or a death. Failures are deduplicated by signature
(outcome, exception type and the innermost aiinfra frame), each signature's first case is
minimised (mutations dropped one by one while the signature stays), and every failing case is
saved as YAML + JSON under --out. The report (stdout, and --report as JSON) gives counts per
outcome, rate, peak RSS per worker, the slowest cases and the signatures.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import resource
import signal
import statistics
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aiinfra.errors import BlueprintError, Level, format_path  # noqa: E402
from aiinfra.pipeline import build_text  # noqa: E402
from aiinfra.render import registered, render_all  # noqa: E402

PROFILES = {"short": 150, "full": 10_000}
CLUSTER = ("config", "aiinfra:cluster")
FILE = "fuzz.yaml"
FAILURES = ("crash", "render", "hang", "memory", "malformed")
OUTCOMES = ("ok", "refused", *FAILURES)
KILL_GRACE_S = 5.0
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# ------------------------------------------------------------------ base blueprints


@dataclass(frozen=True)
class Base:
    env: str
    text: str
    doc: dict
    weight: int


def load_bases(root: Path = ROOT) -> list[Base]:
    """Every stacks/*.yaml; dev weighs 3, the others 1 (dev is ~6x faster to build and render)."""
    bases = []
    for path in sorted((root / "stacks").glob("*.yaml")):
        env = path.name.removesuffix(".yaml").removeprefix("Pulumi.")
        text = path.read_text(encoding="utf-8")
        bases.append(Base(env, text, yaml.safe_load(text), 3 if env == "dev" else 1))
    if not bases:
        raise SystemExit(f"no blueprints under {root / 'stacks'}")
    return bases


def walk(node: object, prefix: tuple = ()) -> list[tuple[tuple, object]]:
    """(path, value) of every node below ``node``, in document order."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(((*prefix, key), value))
            out.extend(walk(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append(((*prefix, i), value))
            out.extend(walk(value, (*prefix, i)))
    return out


def _scalars_by_key(bases: list[Base]) -> tuple[dict[str, list], list]:
    """Scalar values seen under each key name, and all scalars (sorted: no hash-order anywhere)."""
    by_key: dict[str, set] = {}
    every: set = set()
    for base in bases:
        for path, value in walk(base.doc):
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                name = str(path[-1]) if not isinstance(path[-1], int) else str(path[-2])
                by_key.setdefault(name, set()).add(value)
                every.add(value)
    order = lambda v: (type(v).__name__, repr(v))  # noqa: E731
    return {k: sorted(v, key=order) for k, v in sorted(by_key.items())}, sorted(every, key=order)


# ------------------------------------------------------------------ value pools

ZEROS: list = [0, 0.0, -0.0, "0", "", " ", "0.0"]
NEGATIVES: list = [-1, -0.5, -(2**31), "-1", -1e-300]
HUGE: list = [2**63, 2**63 - 1, 2**64, 10**60, -(2**63), 1e60, 1e308, math.inf, -math.inf, math.nan, 2**1024, 10**400,
              10**4000]
STRINGS: list = ["", " ", "\t", "ü", "名前", "\u202e", "\u200b", "😀", "a" * 10_000, "x y", "a/b", "../../etc",
                 "${HOME}", "{{ x }}", "{% raw %}", "'", '"', "\\", "%s", "null", "~", "auto", "none", "0x7fff",
                 "line\nbreak", "a: b", "- a", "#", "*", "&", "!", "|", ">", "@", "`", "\x00", "\x1b[31m",
                 "\u2028", "\ufeff", "Ω" * 300]
WRONG_TYPES: list = [[], {}, [1, 2], {"a": 1}, True, False, None, [[]], [None], [{}], {"": None}, {1: 2}]
UNITS: list = ["0TB/s", "0TiB", "0GB", "0B", "1QiB", "2XiB", "1e60TB", "-1TiB", "1.5.3TiB", "TiB", "inf TiB",
               "nanGiB", "999999999999999999999PB", "1 TiB", "2tib", "1ZB/s", "0.000001B", "1TB/h", "1e-9GB",
               "0.0TB/s", "1YiB", "1kib", "1,5TB", "35", "35GB/s", "1TB/s/s", ".inf TB"]
RANGES: list = ["mlx5_[0-700000]", "gpu[1-9999999]", "gpu[0-0]", "gpu[5-1]", "gpu[01-", "gpu[1-3,2]", "mlx5_[0-6]",
                "mlx5_[0-15]", "mlx5_[0-7],mlx5_[0-7]", "gpu[1-2][1-2]", "[1-3]", "gpu[-1-3]", "gpu[a-z]",
                "gpu[001-480]", "gpu[1-100000]", "mlx5_[8-15]", "mlx5_8", "gpu[01-02]", "mgmt[01-03]", "gpu01,gpu01",
                "GPU01", "gpu_01", "gpu01.example.org", "gpu[1-3/2]", "gpu[0001-1024]"]
ADDRESSES: list = ["10.10.0.256", "300.1.1.1", "10.10.0.5", "::1", "fe80::1/64", "10.10.0.0/0", "10.10.0.0/33",
                   "0.0.0.0/0", "10.10.0.1/24", "10.12.0.250", "10.12.0.250@tcp", "10.12.0.999@o2ib", "@o2ib",
                   "10.10.0.2", "10.10.0.1", "10.10.0.3", "255.255.255.255/32", "10.0.0.0/8", "1.2.3", "10.10.0.0/-1",
                   "localhost", "10.10.0.1@o2ib@o2ib", "10.12.0.250@o2ib1", "10.10.0.0/24", "10.20.0.0/21",
                   "10.244.0.0/16", "10.96.0.0/12", "127.0.0.1", "224.0.0.1", "10.010.0.1", "10.10.0.0/31",
                   "10.10.0.0/32", "10.12.0.250 @o2ib"]
VERSIONS: list = ["latest", "1", "55O.127.08", "v", "1.2.3.4.5", "0.0.0", "999.999.999", 1.31, 24.05, "24.05-rc1", "0",
                  "-1.0", "1..2", "stable", ".", "v1.31.4", "1.31.x", "550.127.O8", "12", "12.0", "2.18", "2.17.1",
                  "1.27.0", "1.35.0", "22.05", "25.11.0", "470.57.02", "9999.0", "v0.0.1", "0.8.5-rc1", "abc"]
COUNTS: list = [16, 80, 7, 9, 3, 5, 1000, 0, 1, 2, 4, 8, 2**31, 65535, 65536, 1_000_000]
BOOLS_ISH: list = ["yes", "no", "on", "off", "true", "True", 0, 1, 2, "y"]
POOLS = {"zero": ZEROS, "negative": NEGATIVES, "huge": HUGE, "string": STRINGS, "wrong-type": WRONG_TYPES,
         "unit": UNITS, "range": RANGES, "address": ADDRESSES, "version": VERSIONS, "count": COUNTS,
         "bool-ish": BOOLS_ISH}

TYPO_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_.O"
UNIT_RE = re.compile(r"^\s*([0-9.eE+-]+)\s*([KMGTPEZY]i?B|B)(/s)?\s*$")
IP_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")
VERSION_RE = re.compile(r"^v?\d+(\.\d+)+")

# YAML 1.1 scalars PyYAML resolves to other types, and scalars of explicit tags
PLAIN_SCALARS = ["1:20", "0x1F", "0o17", "017", "0b101", "2024-01-01", "2001-12-14 21:59:43.10 -5", "~", ".inf",
                 "-.inf", ".NaN", "1.0e+400", "y", "n", "on", "off", "yes", "=", "<<", "1_000", "+12", "1e3",
                 "12e03", "-0", "0.", ".5", "190:20:30", "null", "Null", "NULL", "!",
                 # past float range, and past Python's 4,300-digit int/str conversion limit
                 "1" + "0" * 400, "9" * 5000, "0x" + "f" * 5000, "0b" + "1" * 20_000, ":".join(["59"] * 400)]
TAGS = ["!!float", "!!int", "!!str", "!!bool", "!!null", "!!timestamp", "!!binary", "!!python/object:os.system",
        "!!python/name:os.system", "!!python/tuple", "!custom", "!Ref", "!<tag:yaml.org,2002:float>", "!!set",
        "!!omap", "!!pairs", "!!merge", "!!value", "!!map", "!!seq", "!!yaml", "!<!>", "!e!x"]
TAG_SCALARS = ["2.15.6", "x", "2024-13-45", "2001-12-14t21:59:43.10-05:00", "2024-02-30", ".inf", "1e999", "1.0e+999",
               "not base64!", "aGVsbG8=", "/w==", "1:20", "0x1F", "", "~", "9" * 400, "-", "nan", "0", "ls"]
TAG_COLLECTIONS = ["!!set {a, b}", "!!set [a]", "!!omap [{a: 1}, {b: 2}]", "!!omap [a]", "!!pairs [{a: 1}]",
                   "!!pairs {a: 1}", "!!binary [1]", "!!timestamp [1]", "!!str {a: 1}", "!!int [1]",
                   "!!python/tuple [1, 2]", "!!map [a]", "!!seq {a: 1}", "!!float {}"]


def typos(word: str, rng: random.Random) -> str:
    """One-letter edit of ``word``: delete, insert, substitute, transpose, or O for 0 / l for 1."""
    if not word:
        return rng.choice(TYPO_CHARS)
    i = rng.randrange(len(word))
    kind = rng.choice(["delete", "insert", "substitute", "transpose", "look-alike", "case"])
    if kind == "delete":
        return word[:i] + word[i + 1:]
    if kind == "insert":
        return word[:i] + rng.choice(TYPO_CHARS) + word[i:]
    if kind == "substitute":
        return word[:i] + rng.choice(TYPO_CHARS) + word[i + 1:]
    if kind == "transpose" and len(word) > 1:
        i = min(i, len(word) - 2)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "look-alike" and any(c in word for c in "01"):
        positions = [j for j, c in enumerate(word) if c in "01"]
        j = rng.choice(positions)
        return word[:j] + {"0": "O", "1": "l"}[word[j]] + word[j + 1:]
    return word.upper() if word != word.upper() else word.lower()


def _variants_of(value: object, rng: random.Random) -> list[tuple[str, object]]:
    """Odd values shaped like ``value`` (its type, its unit, its range, its address)."""
    out: list[tuple[str, object]] = []
    if isinstance(value, bool):
        out += [("bool-ish", v) for v in BOOLS_ISH[:4]] + [("wrong-type", str(value))]
    elif isinstance(value, int):
        out += [("zero", 0), ("negative", -value or -1), ("near", value + 1), ("near", value - 1),
                ("huge", value * 1000), ("huge", 2**63), ("wrong-type", str(value)), ("wrong-type", value + 0.5),
                ("wrong-type", float(value)), ("huge", 10**60)]
    elif isinstance(value, float):
        out += [("zero", 0.0), ("negative", -value), ("huge", math.inf), ("huge", math.nan), ("huge", 1e60),
                ("tiny", 1e-300), ("wrong-type", str(value)), ("near", value * 1.0000001), ("huge", value * 1e6)]
    elif isinstance(value, str):
        out += [("typo", typos(value, rng)) for _ in range(3)]
        out += [("case", value.upper()), ("space", f" {value} "), ("long", value * 200), ("empty", "")]
        m = UNIT_RE.match(value)
        if m:
            num, unit, rate = m.group(1), m.group(2), m.group(3) or ""
            out += [("unit", f"0{unit}{rate}"), ("unit", f"-{num}{unit}{rate}"), ("unit", f"1e60{unit}{rate}"),
                    ("unit", f"{num}Q{unit[-1]}{rate}"), ("unit", f"{num}{unit.lower()}{rate}"),
                    ("unit", num), ("unit", f"{num}{unit}{'/s' if not rate else ''}"),
                    ("unit", f"{num}{typos(unit, rng)}{rate}")]
        if "[" in value or re.search(r"\d+$", value):
            stem = re.split(r"[\[\d]", value, maxsplit=1)[0] or "gpu"
            out += [("range", f"{stem}[0-700000]"), ("range", f"{stem}[1-9999999]"), ("range", f"{stem}[5-1]"),
                    ("range", f"{stem}[0-6]"), ("range", f"{value},{value}"), ("range", f"{stem}[")]
        if IP_RE.search(value):
            octets = IP_RE.search(value).group(0).split(".")
            out += [("address", value.replace(".".join(octets), ".".join([*octets[:3], "256"]))),
                    ("address", value.replace(".".join(octets), ".".join(["300", *octets[1:]]))),
                    ("address", value.split("/")[0] + "/0"), ("address", value.split("/")[0] + "/33"),
                    ("address", value.split("@")[0])]
        if VERSION_RE.match(value):
            out += [("version", "latest"), ("version", value.split(".")[0]), ("version", value.replace("0", "O", 1)),
                    ("version", value + ".0.0"), ("version", "v" + value), ("version", "0." + value)]
    elif isinstance(value, list):
        out += [("list", []), ("list", value * 3), ("list", [value]), ("list", [None] + value[:1]),
                ("list", list(reversed(value))), ("wrong-type", value[0] if value else None)]
    elif isinstance(value, dict):
        keys = list(value)
        out += [("dict", {}), ("wrong-type", list(value.values())), ("wrong-type", keys)]
        if keys:
            out.append(("dict", {k: None for k in keys}))
    return out


@dataclass
class ValueSource:
    by_key: dict[str, list]
    every: list

    def pick(self, rng: random.Random, current: object, key: object) -> tuple[str, object]:
        """(category, value) for a key that holds ``current``."""
        roll = rng.random()
        if roll < 0.45:
            variants = _variants_of(current, rng)
            if variants:
                return rng.choice(variants)
        if roll < 0.6:
            same = self.by_key.get(str(key))
            if same:
                return "same-key", rng.choice(same)
        if roll < 0.65:
            return "any-scalar", rng.choice(self.every)
        name = rng.choice(sorted(POOLS))
        return name, rng.choice(POOLS[name])


# ------------------------------------------------------------------ mutations


@dataclass
class Mutation:
    """One edit. ``level`` is "data" (applied to the parsed document) or "text" (to the dumped text)."""

    level: str
    op: str
    kind: str  # what coverage is counted by, e.g. "replace:unit", "raw:bomb", "text:bom"
    path: tuple = ()
    value: Any = None
    other: tuple = ()  # second path (copy, alias)
    fragments: dict = field(default_factory=dict)  # sentinel -> raw YAML (raw ops)
    params: dict = field(default_factory=dict)

    def describe(self) -> str:
        where = _path_text(self.path)
        if self.op == "replace":
            return f"{where} = {_short(self.value)}"
        if self.op == "delete":
            return f"delete {where}"
        if self.op == "rename":
            return f"rename {where} -> {_short(self.value)}"
        if self.op == "add":
            return f"add under {where}: {_short(self.value)}"
        if self.op == "duplicate":
            return f"duplicate {where} x{self.value}"
        if self.op == "copy":
            return f"{where} = copy of {_path_text(self.other)}"
        if self.op == "raw":
            parts = [f"{_path_text(p)}: {_short(frag, 160)}" for p, frag in self.params["placements"]]
            return "raw YAML " + "; ".join(parts)
        return f"text {self.op} {_short(self.params, 160)}"


def _path_text(path: tuple) -> str:
    if path[: len(CLUSTER)] == CLUSTER:
        return format_path(tuple(path[len(CLUSTER):]))
    return ".".join(str(p) for p in path) or "(document)"


def _short(value: object, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _flow(value: object) -> str:
    """``value`` as one line of flow YAML."""
    text = yaml.dump([value], Dumper=_Dumper, default_flow_style=True, width=1 << 30, allow_unicode=True)
    return text.strip()[1:-1]


def _parent(doc: object, path: tuple) -> tuple[object, object] | None:
    node = doc
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    if isinstance(node, dict) and path[-1] in node:
        return node, path[-1]
    if isinstance(node, list) and isinstance(path[-1], int) and 0 <= path[-1] < len(node):
        return node, path[-1]
    return None


def _get(doc: object, path: tuple) -> tuple[bool, object]:
    found = _parent(doc, path) if path else (None, None)
    if found is None:
        return False, None
    node, key = found
    return (True, doc) if node is None else (True, node[key])


def apply_data(doc: dict, m: Mutation) -> bool:
    """Apply a data-level mutation in place; False if its path is gone (an earlier edit removed it)."""
    found = _parent(doc, m.path)
    if found is None:
        return False
    node, key = found
    if m.op == "replace":
        node[key] = copy.deepcopy(m.value)
    elif m.op == "delete":
        del node[key]
    elif m.op == "rename":
        if not isinstance(node, dict):
            return False
        items = [(m.value if k == key else k, v) for k, v in node.items()]
        node.clear()
        node.update(items)
    elif m.op == "add":
        target = node[key]
        if isinstance(target, dict):
            target[m.params["key"]] = copy.deepcopy(m.value)
        elif isinstance(target, list):
            target.append(copy.deepcopy(m.value))
        else:
            return False
    elif m.op == "duplicate":
        if not isinstance(node, list):
            return False
        node[key + 1:key + 1] = [copy.deepcopy(node[key]) for _ in range(m.value)]
    elif m.op == "copy":
        ok, value = _get(doc, m.other)
        if not ok:
            return False
        node[key] = copy.deepcopy(value)
    elif m.op == "raw":
        for (path, _), sentinel in zip(m.params["placements"], m.fragments, strict=True):
            where = _parent(doc, path)
            if where is None:
                return False
            where[0][where[1]] = sentinel
    return True


def apply_text(text: str, m: Mutation) -> str:
    """Apply a text-level mutation; positions are fractions, so they apply to any text."""
    p = m.params
    lines = text.split("\n")
    if m.op == "bom":
        return "\ufeff" + text if p["where"] == "start" else _insert_at_line(lines, p["at"], "\ufeff")
    if m.op == "tab":
        candidates = [i for i, line in enumerate(lines) if line.startswith("  ")]
        if not candidates:
            return text
        i = candidates[int(p["at"] * len(candidates))]
        stripped = lines[i].lstrip(" ")
        lines[i] = "\t" * max(1, (len(lines[i]) - len(stripped)) // p["width"]) + stripped
        return "\n".join(lines)
    if m.op == "duplicate-key":
        candidates = [i for i, line in enumerate(lines) if re.match(r"^\s*[^\s#-][^:]*: \S", line)]
        if not candidates:
            return text
        i = candidates[int(p["at"] * len(candidates))]
        head = lines[i].split(": ", 1)[0]
        extra = lines[i] if p["same_value"] else f"{head}: {p['value']}"
        lines.insert(i + 1, extra)
        return "\n".join(lines)
    if m.op == "control":
        pos = int(p["at"] * len(text))
        return text[:pos] + p["char"] + text[pos:]
    if m.op == "truncate":
        return text[: int(p["at"] * len(text))]
    if m.op == "newlines":
        return text.replace("\n", p["newline"])
    if m.op == "dedent":
        candidates = [i for i, line in enumerate(lines) if line.startswith("  ")]
        if not candidates:
            return text
        i = candidates[int(p["at"] * len(candidates))]
        lines[i] = lines[i][1:]
        return "\n".join(lines)
    if m.op == "documents":
        return p["before"] + text + p["after"]
    if m.op == "huge-document":
        return text.rstrip("\n") + "\nzz_padding:\n" + "- padding\n" * p["items"]
    raise ValueError(f"unknown text mutation {m.op}")


def _insert_at_line(lines: list[str], at: float, prefix: str) -> str:
    i = int(at * len(lines))
    lines[i] = prefix + lines[i]
    return "\n".join(lines)


def dump(doc: object) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 30,
                     default_flow_style=False)


# ------------------------------------------------------------------ raw YAML fragments


def _bomb(k: int, depth: int, width: int) -> str:
    layers = [f"&b{k}_0 [{', '.join(['lol'] * width)}]"]
    for d in range(1, depth):
        layers.append(f"&b{k}_{d} [{', '.join([f'*b{k}_{d - 1}'] * width)}]")
    return "[" + ", ".join(layers) + "]"


def _recursive(k: int, value: object, rng: random.Random) -> str:
    anchor = f"r{k}"
    if isinstance(value, dict) and value:
        items = [f"{_flow(key)}: {_flow(v)}" for key, v in value.items()]
        keys = list(value)
        i = rng.randrange(len(keys) + 1)
        if i < len(keys):
            items[i] = f"{_flow(keys[i])}: *{anchor}"
        else:
            items.append(f"self: *{anchor}")
        return f"&{anchor} {{{', '.join(items)}}}"
    if isinstance(value, list) and value:
        items = [_flow(v) for v in value]
        items.insert(rng.randrange(len(items) + 1), f"*{anchor}")
        return f"&{anchor} [{', '.join(items)}]"
    return rng.choice([f"&{anchor} [*{anchor}]", f"&{anchor} {{a: *{anchor}}}", f"&{anchor} {{<<: *{anchor}}}",
                       f"&{anchor} [[*{anchor}]]"])


RAW_KINDS = ["tag", "tag-collection", "plain-scalar", "alias", "merge", "recursive", "bomb", "deep", "flow-duplicate",
             "complex-key", "huge-string", "undefined-alias"]
RAW_WEIGHTS = [20, 6, 12, 8, 4, 8, 3, 3, 5, 4, 2, 2]


def raw_mutation(rng: random.Random, doc: dict, paths: list[tuple[tuple, object]], k: int) -> Mutation:
    """Put raw YAML at a path: the dump has a sentinel there, replaced by the fragment afterwards."""
    kind = rng.choices(RAW_KINDS, RAW_WEIGHTS)[0]
    path, value = rng.choice(paths)
    placements: list[tuple[tuple, str]] = []
    if kind == "tag":
        scalar = rng.choice([*TAG_SCALARS, _flow(value) if not isinstance(value, (dict, list)) else "x"])
        placements.append((path, f"{rng.choice(TAGS)} {scalar}".rstrip()))
    elif kind == "tag-collection":
        placements.append((path, rng.choice([*TAG_COLLECTIONS, f"{rng.choice(TAGS)} {_flow(value)}"])))
    elif kind == "plain-scalar":
        placements.append((path, rng.choice(PLAIN_SCALARS)))
    elif kind in ("alias", "merge"):
        other, other_value = rng.choice(paths)
        anchor = f"a{k}"
        first, second = sorted([path, other], key=lambda p: [q for q, _ in paths].index(p))
        first_value = value if first == path else other_value
        placements.append((first, f"&{anchor} {_flow(first_value)}"))
        if second != first:
            placements.append((second, f"*{anchor}" if kind == "alias" else rng.choice(
                [f"{{<<: *{anchor}}}", f"{{<<: [*{anchor}, *{anchor}]}}", f"{{<<: *{anchor}, extra: 1}}"])))
    elif kind == "recursive":
        placements.append((path, _recursive(k, value, rng)))
    elif kind == "bomb":
        depth, width = rng.choice([(3, 3), (4, 5), (5, 6), (6, 8), (7, 9), (8, 9), (9, 10), (12, 6), (30, 2)])
        placements.append((path, _bomb(k, depth, width)))
    elif kind == "deep":
        depth = rng.choice([100, 1000, 10_000, 100_000])
        placements.append((path, rng.choice(["[" * depth + "]" * depth, "{a: " * depth + "1" + "}" * depth])))
    elif kind == "flow-duplicate":
        if isinstance(value, dict) and value:
            key = rng.choice(list(value))
            items = [f"{_flow(kk)}: {_flow(v)}" for kk, v in value.items()]
            items.append(f"{_flow(key)}: {_flow(rng.choice(POOLS[rng.choice(sorted(POOLS))]))}")
            placements.append((path, "{" + ", ".join(items) + "}"))
        else:
            placements.append((path, "{a: 1, a: 2}"))
    elif kind == "complex-key":
        placements.append((path, rng.choice(["{[a, b]: 1}", "{? {x: 1} : 2}", "{{a: 1}: 2}", "{[]: x}",
                                             "{? [gpu] : 1}", "{null: 1, ~: 2}", "{1: a, 1.0: b}",
                                             "{? 0x" + "f" * 5000 + " : 1}", "{? " + "k" * 2000 + " : 1}"])))
    elif kind == "huge-string":
        placements.append((path, "x" * rng.choice([10**6, 10**7, 3 * 10**7, 6 * 10**7])))
    elif kind == "undefined-alias":
        placements.append((path, rng.choice([f"*nowhere{k}", f"{{<<: *nowhere{k}}}", f"[*nowhere{k}]"])))
    fragments = {f"__FZ{k}_{i}__": frag for i, (_, frag) in enumerate(placements)}
    return Mutation("data", "raw", f"raw:{kind}", path=path, fragments=fragments,
                    params={"placements": placements})


def data_mutation(rng: random.Random, doc: dict, values: ValueSource, k: int) -> Mutation | None:
    every = walk(doc)
    inside = [(p, v) for p, v in every if p[: len(CLUSTER)] == CLUSTER and len(p) > len(CLUSTER)]
    paths = inside if inside and rng.random() < 0.93 else every
    if not paths:
        return None
    op = rng.choices(["replace", "delete", "rename", "add", "duplicate", "copy", "raw"],
                     [44, 9, 5, 8, 6, 5, 23])[0]
    if op == "raw":
        return raw_mutation(rng, doc, paths, k)
    path, value = rng.choice(paths)
    key = path[-1]
    if op == "replace":
        category, new = values.pick(rng, value, key if not isinstance(key, int) else path[-2])
        return Mutation("data", "replace", f"replace:{category}", path=path, value=new)
    if op == "delete":
        return Mutation("data", "delete", "delete", path=path)
    if op == "rename" and not isinstance(key, int):
        new = rng.choice([typos(str(key), rng), typos(str(key), rng), str(key).upper(), f"{key} ", "", 1, None, True])
        return Mutation("data", "rename", "rename", path=path, value=new)
    if op == "add" and isinstance(value, (dict, list)):
        category, new = values.pick(rng, value[0] if isinstance(value, list) and value else None, key)
        new_key = rng.choice(["x", "", "zz", "名前", 1, None, True, "a" * 300, *(typos(str(k2), rng) for k2 in value)]
                             if isinstance(value, dict) else ["x"])
        if isinstance(value, list) and value and rng.random() < 0.5:
            new, category = copy.deepcopy(value[-1]), "copy-of-last"
        return Mutation("data", "add", f"add:{category}", path=path, value=new, params={"key": new_key})
    if op == "duplicate":
        items = [(p, v) for p, v in paths if isinstance(p[-1], int)]
        if items:
            path, _ = rng.choice(items)
            times = rng.choices([1, 2, 50, 1000], [70, 15, 10, 5])[0]
            return Mutation("data", "duplicate", f"duplicate:x{times}", path=path, value=times)
    if op == "copy":
        other, _ = rng.choice(paths)
        return Mutation("data", "copy", "copy", path=path, other=other)
    category, new = values.pick(rng, value, key)
    return Mutation("data", "replace", f"replace:{category}", path=path, value=new)


TEXT_OPS = ["bom", "tab", "duplicate-key", "control", "truncate", "newlines", "dedent", "documents", "huge-document"]
TEXT_WEIGHTS = [8, 10, 18, 12, 8, 8, 8, 10, 3]
CONTROL_CHARS = ["\x00", "\x07", "\x1b", "\x85", "\u2028", "\ufffe", "\x7f", "\t", "\r", "\ud7ff", "\U0010ffff",
                 "\x0c", "\x0b"]


def text_mutation(rng: random.Random, values: ValueSource) -> Mutation:
    op = rng.choices(TEXT_OPS, TEXT_WEIGHTS)[0]
    at = rng.random()
    params: dict[str, Any] = {"at": at}
    if op == "bom":
        params["where"] = rng.choice(["start", "start", "line"])
    elif op == "tab":
        params["width"] = rng.choice([1, 2, 4])
    elif op == "duplicate-key":
        params["same_value"] = rng.random() < 0.5
        params["value"] = _flow(values.pick(rng, None, "")[1])
    elif op == "control":
        params["char"] = rng.choice(CONTROL_CHARS)
    elif op == "newlines":
        params["newline"] = rng.choice(["\r\n", "\r", "\n\n", "\x85", "\u2028"])
    elif op == "documents":
        params["before"], params["after"] = rng.choice([
            ("", "\n---\nfoo: 1\n"), ("%YAML 1.1\n---\n", ""), ("%YAML 2.0\n---\n", ""), ("%YAML 1.2\n---\n", ""),
            ("%TAG ! tag:example.com,2000:\n---\n", ""), ("---\n", "\n...\n"), ("", "\n---\n"), ("--- !!map\n", ""),
            ("", "\n...\ngarbage: [\n"), ("%FOO bar\n---\n", ""), ("--- |\n", ""), ("", "\n" + "#" * 100_000 + "\n"),
        ])
    elif op == "huge-document":
        params["items"] = rng.choice([10_000, 100_000, 300_000])
    return Mutation("text", op, f"text:{op}", params=params)


@dataclass
class Case:
    index: int
    env: str
    mutations: list[Mutation]
    text: str
    skipped: list[int]  # mutations whose path was gone


def materialise(base: Base, mutations: list[Mutation]) -> tuple[str, list[int]]:
    """The text of ``base`` with ``mutations`` applied (data ones, then dump, then text ones)."""
    data = [m for m in mutations if m.level == "data"]
    skipped = []
    if data:
        doc = copy.deepcopy(base.doc)
        for i, m in enumerate(mutations):
            if m.level == "data" and not apply_data(doc, m):
                skipped.append(i)
        text = dump(doc)
        for m in data:
            for sentinel, fragment in m.fragments.items():
                text = re.sub(rf"(?<![\w]){re.escape(sentinel)}(?![\w])", lambda _, f=fragment: f, text)
    else:
        text = base.text  # the file as written, comments and all
    for m in mutations:
        if m.level == "text":
            text = apply_text(text, m)
    return text, skipped


class Generator:
    """Case ``index`` of ``seed``: a function of (seed, index, the stacks) only."""

    def __init__(self, seed: int, bases: list[Base] | None = None):
        self.seed = seed
        self.bases = bases or load_bases()
        by_key, every = _scalars_by_key(self.bases)
        self.values = ValueSource(by_key, every)

    def mutations(self, index: int) -> tuple[Base, list[Mutation]]:
        rng = random.Random(f"aiinfra-fuzz/{self.seed}/{index}")
        base = rng.choices(self.bases, [b.weight for b in self.bases])[0]
        n_data = rng.choices([0, 1, 2, 3, 4], [12, 40, 25, 15, 8])[0]
        n_text = rng.choices([0, 1, 2], [65, 28, 7])[0] if n_data else rng.choice([1, 1, 2])
        doc = copy.deepcopy(base.doc)
        mutations: list[Mutation] = []
        for k in range(n_data):
            m = data_mutation(rng, doc, self.values, k)
            if m is not None:
                apply_data(doc, m)
                mutations.append(m)
        mutations += [text_mutation(rng, self.values) for _ in range(n_text)]
        return base, mutations

    def case(self, index: int, keep: tuple[int, ...] | None = None) -> Case:
        base, mutations = self.mutations(index)
        if keep is not None:
            mutations = [mutations[i] for i in keep]
        text, skipped = materialise(base, mutations)
        return Case(index, base.env, mutations, text, skipped)


# ------------------------------------------------------------------ one case, in a worker

PROBLEM_RE = re.compile(
    r"^(?P<line>:[1-9]\d*)?: (?P<path>aiinfra:cluster.*?): (?P<level>error|warning)\[(?P<id>[a-z0-9]+(?:-[a-z0-9]+)*)\]:"
    r" (?P<message>\S.*)$",
    re.S,
)


class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case (a BaseException: no `except Exception` swallows it)."""


def _on_alarm(signum, frame):
    raise CaseTimeout


def _frames(tb) -> list[str]:
    out = []
    for fs in traceback.extract_tb(tb):
        name = fs.filename
        if "/aiinfra/" in name:
            name = "aiinfra/" + name.rsplit("/aiinfra/", 1)[1]
        elif "site-packages/" in name:
            name = name.rsplit("site-packages/", 1)[1]
        out.append(f"{name}:{fs.lineno} in {fs.name}")
    return out


def _innermost_aiinfra(frames: list[str]) -> str:
    for frame in reversed(frames):
        if frame.startswith("aiinfra/"):
            return frame
    return frames[-1] if frames else "?"


def _where(frame: str, with_line: bool) -> str:
    """``aiinfra/spec/loader.py:120 in _walk`` -> ``aiinfra/spec/loader.py:_walk[:120]``."""
    m = re.match(r"^(.*):(\d+) in (.*)$", frame)
    if not m:
        return frame
    return f"{m.group(1)}:{m.group(3)}" + (f":{m.group(2)}" if with_line else "")


LONG_PROBLEM = 1000  # characters: a problem line longer than this echoes too much of the input


def check_problems(problems, file: str, text: str) -> tuple[list[str], list[dict]]:
    """(reasons a problem breaks the format, problems lacking a hint or a line, or over-long)."""
    bad, lacking = [], []
    # YAML's line breaks; a mark may sit just past the last line (end of stream)
    n_lines = len(re.split(r"\r\n|[\r\n\x85\u2028\u2029]", text)) + 1
    for p in problems:
        shown = p.format(file)
        if not shown.startswith(file):
            bad.append(f"does not start with the file name: {shown[:200]!r}")
            continue
        m = PROBLEM_RE.match(shown[len(file):].split(" (fix: ")[0] if p.hint else shown[len(file):])
        if not m:
            bad.append(f"[{p.id}] not file:line?: key.path: level[id]: message: {shown[:200]!r}")
        elif "\n" in shown:
            bad.append(f"[{p.id}] spans lines: {shown[:200]!r}")
        elif not p.message.strip():
            bad.append(f"[{p.id}] empty message")
        if p.line is not None and not 1 <= p.line <= n_lines:
            bad.append(f"[{p.id}] line {p.line} outside the file (1-{n_lines})")
        if not p.hint or p.line is None or len(shown) > LONG_PROBLEM:
            lacking.append({"id": p.id, "level": p.level.value, "hint": bool(p.hint), "line": p.line is not None,
                            "chars": len(shown), "path": p.key_path[:200], "message": p.message[:200]})
    return bad, lacking


def _reset_peak_rss() -> int:
    """Reset VmHWM to the current RSS (Linux: clear_refs 5); return the current RSS in KiB."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def _status_kib(field_name: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_case(text: str, env: str, timeout_s: float, memory_limit_kib: int, build=build_text, render=render_all) -> dict:
    """Build (and render if accepted) one blueprint text; classify the outcome.

    ``build`` and ``render`` are the pipeline's; the harness's own tests pass others to check that a
    hang, a death or a memory blow-up is caught and classified.
    """
    result: dict[str, Any] = {"phase": "build"}
    start_rss = _reset_peak_rss()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    t0 = time.perf_counter()
    exc_info = None
    try:
        try:
            built = build(text, FILE, env)
        except BlueprintError as exc:
            result["outcome"] = "refused"
            result["problems"] = len(exc.problems)
            result["ids"] = sorted({p.id for p in exc.problems})
            bad, lacking = check_problems(exc.problems, FILE, text)
            if exc.file != FILE:
                bad.append(f"BlueprintError names {exc.file!r}, not {FILE!r}")
            if not any(p.level is Level.ERROR for p in exc.problems):
                bad.append("refused without an error-level problem")
            result["lacking"] = lacking
            if bad:
                result["outcome"], result["reasons"] = "malformed", bad
        else:
            bad, lacking = check_problems(built.warnings, FILE, text)
            result["lacking"] = lacking
            result["phase"] = "render"
            render(built.cluster, built.plan)
            result["outcome"] = "ok"
            if bad:
                result["outcome"], result["reasons"] = "malformed", bad
    except CaseTimeout:
        result["outcome"] = "hang"
        exc_info = sys.exc_info()
    except MemoryError:
        result["outcome"] = "memory"
        exc_info = sys.exc_info()
    except BaseException:  # noqa: BLE001 - every other exception is the finding
        result["outcome"] = "render" if result["phase"] == "render" else "crash"
        exc_info = sys.exc_info()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    result["seconds"] = time.perf_counter() - t0
    result["peak_rss_kib"] = _status_kib("VmHWM")
    result["rss_growth_kib"] = max(0, result["peak_rss_kib"] - start_rss)
    if exc_info is not None:
        try:
            frames = _frames(exc_info[2])
            result["exception"] = exc_info[0].__name__
            result["message"] = str(exc_info[1])[:500]
            result["frames"] = frames[-10:]
            result["where"] = _innermost_aiinfra(frames)
        except MemoryError:
            result["exception"], result["message"], result["frames"], result["where"] = "MemoryError", "", [], "?"
        del exc_info
    if result["outcome"] in ("ok", "refused") and result["rss_growth_kib"] > memory_limit_kib:
        result["outcome"] = "memory"
        result["exception"] = "PeakRSS"
        result["message"] = f"peak RSS grew by {result['rss_growth_kib'] // 1024} MiB"
        result["where"] = "?"
    return result


def signature(result: dict) -> str:
    outcome = result["outcome"]
    if outcome == "malformed":
        reason = re.sub(r"'.*", "", result["reasons"][0])
        return f"malformed: {reason.strip()}"
    if outcome == "hang" and "where" not in result:
        return "hang: killed by the parent (no Python frame: stuck in C code)"
    if "died" in result:
        return f"{outcome}: worker died ({result['died']})"
    where = _where(result.get("where", "?"), with_line=outcome in ("crash", "render"))
    return f"{outcome}: {result.get('exception', '?')} @ {where}"


def _worker_main(conn, timeout_s: float, memory_limit_mib: int, generator: Generator, build, render) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    memory_limit_kib = memory_limit_mib * 1024
    with contextlib.suppress(ValueError, OSError):
        size = _status_kib("VmSize") * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + memory_limit_mib * 2**20, resource.RLIM_INFINITY))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        index, keep = task
        case = generator.case(index, keep)
        result = run_case(case.text, case.env, timeout_s, memory_limit_kib, build, render)
        result.update(index=index, keep=keep, env=case.env, size=len(case.text),
                      kinds=[m.kind for m in case.mutations])
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


# ------------------------------------------------------------------ the pool (parent side)


class Worker:
    def __init__(self, ctx, slot: int, args: tuple):
        self.slot = slot
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, *args), daemon=True)
        self.process.start()
        child.close()
        self.task: tuple | None = None
        self.started = 0.0

    def stop(self, kill: bool = False) -> None:
        if kill:
            with contextlib.suppress(OSError):
                self.process.kill()
        else:
            with contextlib.suppress(OSError, BrokenPipeError):
                self.conn.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class Pool:
    """Forked workers, one case each at a time; a worker past its deadline is killed and replaced."""

    def __init__(self, jobs: int, timeout_s: float, memory_limit_mib: int, generator: Generator,
                 build=build_text, render=render_all, kill_grace_s: float = KILL_GRACE_S):
        self.ctx = multiprocessing.get_context("fork")
        self.args = (timeout_s, memory_limit_mib, generator, build, render)
        self.timeout_s = timeout_s
        self.grace_s = kill_grace_s
        self.workers = [Worker(self.ctx, slot, self.args) for slot in range(max(1, jobs))]
        self.restarts = 0

    def close(self) -> None:
        for w in self.workers:
            w.stop(kill=w.task is not None)

    def _replace(self, w: Worker, kill: bool) -> None:
        w.stop(kill=kill)
        self.workers[self.workers.index(w)] = Worker(self.ctx, w.slot, self.args)
        self.restarts += 1

    def run(self, tasks: list[tuple[int, tuple | None]], on_result=None) -> list[dict]:
        pending = list(reversed(tasks))
        results = []
        while pending or any(w.task for w in self.workers):
            for w in self.workers:
                if w.task is None and pending:
                    w.task = pending.pop()
                    w.started = time.monotonic()
                    w.conn.send(w.task)
            busy = [w for w in self.workers if w.task is not None]
            deadline = min(w.started for w in busy) + self.timeout_s + self.grace_s
            ready = multiprocessing.connection.wait([w.conn for w in busy], max(0.0, deadline - time.monotonic()))
            for w in busy:
                result = None
                if w.conn in ready:
                    try:
                        result = w.conn.recv()
                    except (EOFError, OSError):
                        w.process.join(5)
                        code = w.process.exitcode
                        died = signal.Signals(-code).name if code is not None and code < 0 else f"exit code {code}"
                        outcome = "memory" if code == -signal.SIGKILL else "crash"
                        result = {"outcome": outcome, "died": died, "exception": "WorkerDied", "message": died}
                        self._fill(result, w)
                        self._replace(w, kill=True)
                    else:
                        if result["outcome"] in ("hang", "memory"):
                            self._replace(w, kill=True)  # give the next case a clean heap
                elif time.monotonic() - w.started > self.timeout_s + self.grace_s:
                    result = {"outcome": "hang", "exception": "Killed",
                              "message": f"no answer after {self.timeout_s + self.grace_s:.1f} s"}
                    self._fill(result, w)
                    self._replace(w, kill=True)
                if result is not None:
                    result["slot"] = w.slot
                    w.task = None
                    results.append(result)
                    if on_result:
                        on_result(result)
        return results

    def _fill(self, result: dict, w: Worker) -> None:
        result.update(index=w.task[0], keep=w.task[1], seconds=time.monotonic() - w.started,
                      peak_rss_kib=0, rss_growth_kib=0)


# ------------------------------------------------------------------ campaign, minimisation, report


def minimise(pool: Pool, generator: Generator, firsts: dict[str, dict]) -> dict[str, tuple[int, ...]]:
    """Per signature, drop mutations one by one while the signature stays (all signatures in parallel)."""
    keep = {sig: tuple(range(len(generator.mutations(r["index"])[1]))) for sig, r in firsts.items()}
    position = dict.fromkeys(firsts, 0)
    while True:
        trials = {}
        for sig, kept in keep.items():
            if position[sig] < len(kept) and len(kept) > 1:
                trials[sig] = kept[: position[sig]] + kept[position[sig] + 1:]
        if not trials:
            return keep
        order = list(trials)
        results = pool.run([(firsts[sig]["index"], trials[sig]) for sig in order])
        by_task = {(r["index"], tuple(r["keep"])): r for r in results}
        for sig in order:
            r = by_task[(firsts[sig]["index"], trials[sig])]
            if signature(r) == sig:
                keep[sig] = trials[sig]
            else:
                position[sig] += 1


def _save_case(out: Path, generator: Generator, result: dict, keep: tuple | None, suffix: str = "") -> dict:
    case = generator.case(result["index"], keep)
    stem = f"case-{result['index']:05d}{suffix}"
    (out / f"{stem}.yaml").write_text(case.text, encoding="utf-8")
    meta = {"index": case.index, "env": case.env, "outcome": result["outcome"], "signature": signature(result),
            "mutations": [m.describe() for m in case.mutations], "skipped": case.skipped,
            **{k: result.get(k) for k in ("exception", "message", "where", "frames", "reasons", "seconds")}}
    (out / f"{stem}.json").write_text(json.dumps(meta, indent=2, default=repr), encoding="utf-8")
    return {"file": str(out / f"{stem}.yaml"), "mutations": meta["mutations"], "text_chars": len(case.text),
            "snippet": _snippet(case)}


def _snippet(case: Case) -> str:
    """The lines of the case's text around its raw fragments or mutated keys (a short reproduction)."""
    lines = case.text.split("\n")
    marks = []
    for m in case.mutations:
        for frag in m.fragments.values():
            marks += [i for i, line in enumerate(lines) if frag[:60] in line][:1]
        if m.level == "data" and m.op != "raw" and m.path:
            key = str(m.path[-1]) if not isinstance(m.path[-1], int) else None
            if key:
                marks += [i for i, line in enumerate(lines) if line.lstrip().startswith(f"{key}:")][:1]
    if not marks:
        return ""
    out = []
    for i in sorted(set(marks))[:3]:
        for j in range(max(0, i - 1), min(len(lines), i + 2)):
            out.append(f"{j + 1:5d}: {lines[j][:240]}")
    return "\n".join(dict.fromkeys(out))


def campaign(cases: int, seed: int, jobs: int, timeout_s: float, memory_limit_mib: int, out: Path | None,
             minimise_failures: bool = True, progress: bool = False, generator: Generator | None = None) -> dict:
    generator = generator or Generator(seed)
    registered()  # import every renderer before the fork: workers share them
    pool = Pool(jobs, timeout_s, memory_limit_mib, generator)
    t0 = time.monotonic()
    done = Counter()

    def tick(result: dict) -> None:
        done[result["outcome"]] += 1
        n = sum(done.values())
        if progress and (n % 250 == 0 or result["outcome"] in FAILURES):
            elapsed = time.monotonic() - t0
            line = f"[{n}/{cases} {elapsed:6.0f}s] " + " ".join(f"{k}={done[k]}" for k in OUTCOMES if done[k])
            if result["outcome"] in FAILURES:
                line += f"  <- case {result['index']}: {signature(result)}"
            print(line, file=sys.stderr, flush=True)

    try:
        results = pool.run([(i, None) for i in range(cases)], on_result=tick)
        elapsed = time.monotonic() - t0
        results.sort(key=lambda r: r["index"])
        failing = [r for r in results if r["outcome"] in FAILURES]
        firsts: dict[str, dict] = {}
        for r in failing:
            firsts.setdefault(signature(r), r)
        kept = minimise(pool, generator, firsts) if minimise_failures and firsts else {}
    finally:
        pool.close()
    report = build_report(results, elapsed, generator, firsts, kept, out,
                          {"cases": cases, "seed": seed, "jobs": jobs, "timeout_s": timeout_s,
                           "memory_limit_mib": memory_limit_mib, "restarts": pool.restarts})
    return report


def build_report(results: list[dict], elapsed: float, generator: Generator, firsts: dict[str, dict],
                 kept: dict[str, tuple], out: Path | None, config: dict) -> dict:
    counts = Counter(r["outcome"] for r in results)
    failing = [r for r in results if r["outcome"] in FAILURES]
    by_sig: dict[str, list[dict]] = {}
    for r in failing:
        by_sig.setdefault(signature(r), []).append(r)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for old in [*out.glob("case-*.yaml"), *out.glob("case-*.json")]:
            old.unlink()
    signatures = []
    for sig, rs in sorted(by_sig.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        first = firsts[sig]
        entry = {"signature": sig, "outcome": first["outcome"], "count": len(rs),
                 "cases": [r["index"] for r in rs][:50],
                 "envs": dict(Counter(r["env"] for r in rs if "env" in r)),
                 "exception": first.get("exception"), "message": first.get("message"),
                 "where": first.get("where"), "frames": first.get("frames", []), "reasons": first.get("reasons")}
        if sig in kept:
            _, muts = generator.mutations(first["index"])
            entry["minimal_mutations"] = [muts[i].describe() for i in kept[sig]]
        if out is not None:
            entry["example"] = _save_case(out, generator, first, None)
            if sig in kept:
                entry["minimal"] = _save_case(out, generator, first, kept[sig], "-min")
            for r in rs[1:]:
                _save_case(out, generator, r, None)
        signatures.append(entry)
    lacking = [p | {"case": r["index"]} for r in results for p in r.get("lacking", [])]
    durations = sorted(r["seconds"] for r in results)
    slots: dict[int, int] = {}
    for r in results:
        slots[r.get("slot", 0)] = max(slots.get(r.get("slot", 0), 0), r.get("peak_rss_kib", 0))
    biggest = max(results, key=lambda r: r.get("rss_growth_kib", 0)) if results else {}
    kinds = Counter(k for r in results for k in r.get("kinds", []))
    report = {
        "config": {**config, "bases": {b.env: b.weight for b in generator.bases}, "python": sys.version.split()[0],
                   "pyyaml": yaml.__version__, "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
                   "cpus": os.cpu_count()},
        "elapsed_s": round(elapsed, 1),
        "rate_cases_per_s": round(len(results) / elapsed, 2) if elapsed else None,
        "outcomes": {k: counts.get(k, 0) for k in OUTCOMES},
        "failures": len(failing),
        "signatures": signatures,
        "refused_ids": dict(Counter(i for r in results for i in r.get("ids", [])).most_common(40)),
        "problems_lacking": {
            "without_hint": dict(Counter(p["id"] for p in lacking if not p["hint"]).most_common()),
            "without_line": dict(Counter(p["id"] for p in lacking if not p["line"]).most_common()),
            f"over_{LONG_PROBLEM}_chars": dict(Counter(p["id"] for p in lacking
                                                       if p["chars"] > LONG_PROBLEM).most_common()),
            "examples": _lacking_examples(lacking),
        },
        "seconds": {"p50": _pct(durations, 0.5), "p90": _pct(durations, 0.9), "p99": _pct(durations, 0.99),
                    "max": round(durations[-1], 3) if durations else None,
                    "mean": round(statistics.fmean(durations), 4) if durations else None},
        "slowest": [{k: r.get(k) for k in ("index", "env", "outcome", "kinds")} | {"seconds": round(r["seconds"], 2)}
                    for r in sorted(results, key=lambda r: -r["seconds"])[:10]],
        "peak_rss_mib": {"per_worker_slot": {s: round(v / 1024, 1) for s, v in sorted(slots.items())},
                         "largest_case_growth": {"index": biggest.get("index"),
                                                 "mib": round(biggest.get("rss_growth_kib", 0) / 1024, 1)}},
        "mutation_kinds": dict(sorted(kinds.items())),
        "out": str(out) if out else None,
    }
    return report


def _lacking_examples(lacking: list[dict]) -> list[dict]:
    seen, out = set(), []
    for p in lacking:
        key = (p["id"], p["hint"], p["line"], p["chars"] > LONG_PROBLEM)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out[:40]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 4)


def print_report(report: dict) -> None:
    c = report["config"]
    o = report["outcomes"]
    print(f"fuzz: {c['cases']} cases, seed {c['seed']}, {c['jobs']} job(s), timeout {c['timeout_s']} s, "
          f"memory limit {c['memory_limit_mib']} MiB; {report['elapsed_s']} s, {report['rate_cases_per_s']} cases/s")
    print("  " + ", ".join(f"{k} {v}" for k, v in o.items()))
    s = report["seconds"]
    print(f"  seconds per case: p50 {s['p50']}, p90 {s['p90']}, p99 {s['p99']}, max {s['max']}")
    rss = report["peak_rss_mib"]
    print(f"  peak RSS per worker (MiB): {rss['per_worker_slot']}; largest growth in one case: "
          f"{rss['largest_case_growth']['mib']} MiB (case {rss['largest_case_growth']['index']})")
    lk = report["problems_lacking"]
    print(f"  problems without a hint: {sum(lk['without_hint'].values())} {lk['without_hint']}")
    print(f"  problems without a line: {sum(lk['without_line'].values())} {lk['without_line']}")
    long = lk[f"over_{LONG_PROBLEM}_chars"]
    print(f"  problems over {LONG_PROBLEM} characters: {sum(long.values())} {long}")
    if report["signatures"]:
        print(f"  {len(report['signatures'])} failure signature(s):")
    for sig in report["signatures"]:
        print(f"  - {sig['count']:4d} x {sig['signature']}")
        if sig.get("message"):
            print(f"         {sig['exception']}: {sig['message'][:300]}")
        for reason in (sig.get("reasons") or [])[:2]:
            print(f"         {reason[:300]}")
        for line in sig.get("minimal_mutations", [])[:4]:
            print(f"         minimal: {line[:300]}")
        if sig.get("minimal"):
            print(f"         case: {sig['minimal']['file']}")
    if report["out"]:
        print(f"  failing cases under {report['out']}")


def replay(path: Path, env: str, timeout_s: float) -> int:
    """Run one saved case in this process and print the outcome (with the full traceback)."""
    text = path.read_text(encoding="utf-8")
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        built = build_text(text, FILE, env)
        render_all(built.cluster, built.plan)
        print("ok")
        return 0
    except BlueprintError as exc:
        print("refused:")
        print(exc)
        return 0
    except CaseTimeout:
        traceback.print_exc()
        print(f"hang: over {timeout_s} s")
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full",
                    help="short: 150 cases (the suite runs it), full: 10,000")
    ap.add_argument("--cases", type=int, help="number of cases (default: the profile's)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it is a hang")
    ap.add_argument("--memory-limit-mib", type=int, default=2048)
    ap.add_argument("--report", type=Path, help="write the report here as JSON (also OUT/report.json)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/aiinfra-fuzz"),
                    help="failing cases (YAML + JSON, -min for the minimised one) and report.json go here")
    ap.add_argument("--no-minimise", action="store_true", help="skip shrinking each signature's first case")
    ap.add_argument("--replay", type=Path, help="run one saved case in-process and print its traceback")
    ap.add_argument("--env", default="dev", help="environment name for --replay (see the case's .json)")
    args = ap.parse_args(argv)
    if args.replay:
        return replay(args.replay, args.env, args.timeout)
    cases = args.cases if args.cases is not None else PROFILES[args.profile]
    report = campaign(cases, args.seed, args.jobs, args.timeout, args.memory_limit_mib, args.out,
                      minimise_failures=not args.no_minimise, progress=True)
    report["config"]["profile"] = args.profile
    for path in [args.report, args.out / "report.json"]:
        if path:
            path.write_text(json.dumps(report, indent=2, default=repr), encoding="utf-8")
    print_report(report)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
