#!/usr/bin/env python3
"""Generate src/aiinfra/catalog/data/engine_flags.json: the command-line flags and Prometheus metric
names of each supported serving-engine version, read from that version's released source.

vLLM: the sdist of every release in ``VLLM_RELEASES`` is fetched from PyPI's simple index (the one
``pip`` uses; ``pip download --no-binary`` cannot fetch it, since preparing vLLM's metadata needs
torch) into a cache folder, checked against the index's sha256, and read without being built or
imported. The flags of ``vllm serve`` are the ``add_argument`` calls of the functions that build
its parser (``EngineArgs/AsyncEngineArgs.add_cli_args`` in vllm/engine/arg_utils.py,
``make_arg_parser`` and ``FrontendArgs.add_cli_args`` in vllm/entrypoints/openai/cli_args.py, the
serve sub-parser of vllm/entrypoints/cli/serve.py or vllm/scripts.py), parsed with ``ast``. From
0.8 many flags take their settings from a config dataclass (``**get_kwargs(Cls)["field"]``): a
field typed ``bool`` becomes an ``argparse.BooleanOptionalAction`` (``--x`` and ``--no-x``), a
``Literal`` becomes its choices; the script reads the field's annotation the same way. Metric names
are the ``vllm:*`` names given to ``Gauge``/``Counter``/``Histogram`` constructors (``hidden``: only
registered with ``--show-hidden-metrics-for-version``).

TensorRT-LLM: PyPI carries no source of it; the flags of the commands aiinfra renders are a
hand-checked list (``TRTLLM_HAND_CHECKED`` below), each naming the page it was read from.

The output holds facts only (names, whether a flag takes a value, short choice lists), sorted.
Usage: ``python scripts/engine_flags.py [--cache DIR] [--output FILE | --check]``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import sys
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "src" / "aiinfra" / "catalog" / "data" / "engine_flags.json"
CACHE = Path(os.environ.get("AIINFRA_SDIST_CACHE", "/tmp/aiinfra-sdists"))
INDEX = "https://pypi.org/simple/{package}/"

#: Every vLLM release the table describes (final releases from 0.6.0 to 0.12.0, post releases too).
VLLM_RELEASES = (
    "0.6.0", "0.6.1", "0.6.1.post1", "0.6.1.post2", "0.6.2", "0.6.3", "0.6.3.post1", "0.6.4",
    "0.6.4.post1", "0.6.5", "0.6.6", "0.6.6.post1", "0.7.0", "0.7.1", "0.7.2", "0.7.3", "0.8.0", "0.8.1",
    "0.8.2", "0.8.3", "0.8.4", "0.8.5", "0.8.5.post1", "0.9.0", "0.9.0.1", "0.9.1", "0.9.2", "0.10.0",
    "0.10.1", "0.10.1.1", "0.10.2", "0.11.0", "0.11.1", "0.11.2", "0.12.0",
)

#: Files that build the ``vllm serve`` parser, and the functions in them that add its arguments.
VLLM_PARSER_FUNCS = {
    "vllm/engine/arg_utils.py": {"add_cli_args"},
    "vllm/entrypoints/openai/cli_args.py": {"make_arg_parser", "add_cli_args"},
}
#: The serve sub-command (arguments added on the ``serve_parser`` object only).
VLLM_SERVE_FILES = ("vllm/entrypoints/cli/serve.py", "vllm/scripts.py")
METRIC_CLASSES = {"Gauge": "gauge", "Counter": "counter", "Histogram": "histogram", "Summary": "summary",
                  "_gauge_cls": "gauge", "_counter_cls": "counter", "_histogram_cls": "histogram"}
NO_VALUE_ACTIONS = {"store_true", "store_false", "store_const", "count", "help", "version"}


# ---------------------------------------------------------------- fetching


def sdist(package: str, version: str, cache: Path, index: dict | None = None) -> tuple[Path, str]:
    """The sdist of ``package==version`` in ``cache`` (downloaded once), and its sha256."""
    name = f"{package}-{version}.tar.gz"
    path = cache / name
    if path.exists() and path.with_suffix(".sha256").exists():
        return path, path.with_suffix(".sha256").read_text().strip()
    files = (index or simple_index(package))
    if name not in files:
        raise LookupError(f"{name} is not on {INDEX.format(package=package)}")
    url, want = files[name]
    data = urllib.request.urlopen(url, timeout=300).read()
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ValueError(f"{name}: sha256 {got} differs from the index's {want}")
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.with_suffix(".sha256").write_text(got + "\n")
    return path, got


def simple_index(package: str) -> dict[str, tuple[str, str]]:
    """File name -> (url, sha256) from PyPI's simple index (PEP 691 JSON)."""
    req = urllib.request.Request(INDEX.format(package=package),
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        data = json.load(resp)
    return {f["filename"]: (f["url"], f["hashes"]["sha256"]) for f in data["files"] if "sha256" in f["hashes"]}


def python_sources(path: Path, package: str) -> dict[str, str]:
    """``vllm/...py`` -> text of every Python file of the package in the sdist (one pass)."""
    out = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/", 1)
            if len(parts) == 2 and member.isfile() and parts[1].startswith(package + "/") \
                    and parts[1].endswith(".py"):
                out[parts[1]] = tar.extractfile(member).read().decode("utf-8", "replace")
    return out


# ---------------------------------------------------------------- a tiny module resolver


@dataclass
class Source:
    files: dict[str, str]
    _trees: dict[str, ast.Module] = field(default_factory=dict)

    def module_file(self, module: str) -> str | None:
        base = module.replace(".", "/")
        return next((f for f in (base + ".py", base + "/__init__.py") if f in self.files), None)

    def tree(self, file: str) -> ast.Module:
        if file not in self._trees:
            self._trees[file] = ast.parse(self.files[file])
        return self._trees[file]

    def resolve(self, file: str, name: str, depth: int = 0) -> tuple[str, ast.AST] | None:
        """Where ``name`` seen in ``file`` is defined: (file, ClassDef or the assigned value)."""
        if depth > 8:
            return None
        for node in self.tree(file).body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return file, node
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return file, node.value
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name \
                    and node.value is not None:
                return file, node.value
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        target = self.module_file(self._absolute(file, node))
                        if target:
                            return self.resolve(target, alias.name, depth + 1)
        return None

    @staticmethod
    def _absolute(file: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = file.rsplit("/", 1)[0].split("/")
        if file.endswith("/__init__.py"):
            package = file[: -len("/__init__.py")].split("/")
        base = package[: len(package) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))


# ---------------------------------------------------------------- type hints of config fields


@dataclass
class Hints:
    bool_: bool = False
    none: bool = False
    literals: list[tuple] = field(default_factory=list)
    other: bool = False  # str, int, a class ...


def hints(src: Source, file: str, node: ast.AST | None, out: Hints, depth: int = 0) -> Hints:
    """The type hints of an annotation, flattened through Optional/Union/|/Annotated and aliases."""
    if node is None or depth > 8:
        out.other = True
        return out
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a forward reference
        try:
            return hints(src, file, ast.parse(node.value, mode="eval").body, out, depth + 1)
        except SyntaxError:
            out.other = True
            return out
    if isinstance(node, ast.Constant) and node.value is None:
        out.none = True
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        hints(src, file, node.left, out, depth + 1)
        hints(src, file, node.right, out, depth + 1)
    elif isinstance(node, ast.Subscript):
        head = _name(node.value)
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Literal":
            out.literals.append(tuple(a.value for a in args if isinstance(a, ast.Constant)))
        elif head in ("Optional",):
            out.none = True
            hints(src, file, args[0], out, depth + 1)
        elif head == "Union":
            for a in args:
                hints(src, file, a, out, depth + 1)
        elif head == "Annotated":
            hints(src, file, args[0], out, depth + 1)
        else:
            out.other = True
    elif isinstance(node, ast.Name) and node.id == "bool":
        out.bool_ = True
    elif isinstance(node, ast.Name | ast.Attribute):
        name = _name(node)
        found = src.resolve(file, name) if isinstance(node, ast.Name) else None
        if found and not isinstance(found[1], ast.ClassDef) and _is_type_expr(found[1]):
            hints(src, found[0], found[1], out, depth + 1)
        else:
            out.other = True
    else:
        out.other = True
    return out


def _is_type_expr(node: ast.AST) -> bool:
    return isinstance(node, ast.Subscript | ast.BinOp) or (
        isinstance(node, ast.Call) and _name(node.func) == "TypeAliasType")


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def dataclass_fields(src: Source, file: str, cls: ast.ClassDef, depth: int = 0) -> dict[str, tuple[str, ast.AST]]:
    """Field name -> (file, annotation) of a config dataclass, base classes first."""
    out: dict[str, tuple[str, ast.AST]] = {}
    for base in cls.bases:
        found = src.resolve(file, _name(base)) if depth < 5 and isinstance(base, ast.Name) else None
        if found and isinstance(found[1], ast.ClassDef):
            out.update(dataclass_fields(src, found[0], found[1], depth + 1))
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and "ClassVar" not in ast.unparse(node.annotation):
            out[node.target.id] = (file, node.annotation)
    return out


def field_kwargs(src: Source, file: str, annotation: ast.AST) -> dict:
    """What vLLM's ``get_kwargs`` makes of a field: a BooleanOptionalAction for bool, choices for a
    Literal (only where the type admits nothing else: with ``str`` beside it vLLM shows them as a
    hint, not choices), a value otherwise."""
    h = hints(src, file, annotation, Hints())
    if h.bool_:
        return {"action": "BooleanOptionalAction"}
    if len(h.literals) == 1 and not h.other:
        return {"choices": sorted({str(c) for c in h.literals[0]} | ({"None"} if h.none else set()))}
    return {}


# ---------------------------------------------------------------- argparse calls


@dataclass(frozen=True)
class Flag:
    takes_value: bool | str  # True, False, or "optional"
    choices: tuple[str, ...] | None
    file: str


class ParserReader:
    """The flags added by the ``add_argument`` calls of chosen functions of one file."""

    def __init__(self, src: Source, file: str):
        self.src, self.file = src, file
        self.flags: dict[str, Flag] = {}

    def read_function(self, fn: ast.FunctionDef, receiver: str | None = None) -> None:
        kwarg_vars = self._kwarg_vars(fn)
        overrides = self._overrides(fn)
        for node in ast.walk(fn):
            if isinstance(node, ast.For):
                self._read_loop(node, kwarg_vars, overrides)
            if not (isinstance(node, ast.Call) and _name(node.func) == "add_argument"):
                continue
            if receiver and not (isinstance(node.func, ast.Attribute) and _name(node.func.value) == receiver):
                continue
            options = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                       and a.value.startswith("-")]
            if options:
                self._add(options, self._kwargs(node.keywords, kwarg_vars, overrides))

    def _read_loop(self, loop: ast.For, kwarg_vars: dict, overrides: dict) -> None:
        """``for key, value in X_kwargs.items(): group.add_argument(f"--{key.replace('_', '-')}", **value)``."""
        it = loop.iter
        if not (isinstance(it, ast.Call) and _name(it.func) == "items" and isinstance(it.func, ast.Attribute)):
            return
        var = _name(it.func.value)
        if var not in kwarg_vars:
            return
        has_call = any(isinstance(n, ast.Call) and _name(n.func) == "add_argument" and n.args
                       and isinstance(n.args[0], ast.JoinedStr) for n in ast.walk(loop))
        if has_call:
            for name, (ffile, ann) in kwarg_vars[var].items():
                kw = {**field_kwargs(self.src, ffile, ann), **overrides.get((var, name), {})}
                self._add(["--" + name.replace("_", "-")], kw)

    def _kwarg_vars(self, fn: ast.FunctionDef) -> dict[str, dict]:
        """Variables bound to ``get_kwargs(ConfigClass)``: name -> the class's fields."""
        out = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and _name(node.value.func) == "get_kwargs" and node.value.args:
                found = self.src.resolve(self.file, _name(node.value.args[0]))
                if found and isinstance(found[1], ast.ClassDef):
                    fields = dataclass_fields(self.src, found[0], found[1])
                    for t in node.targets:
                        if isinstance(t, ast.Name):
                            out[t.id] = fields
        return out

    @staticmethod
    def _overrides(fn: ast.FunctionDef) -> dict[tuple[str, str], dict]:
        """``X_kwargs["field"]["action"] = ...`` set before the arguments are added."""
        out: dict[tuple[str, str], dict] = {}
        for node in ast.walk(fn):
            if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                continue
            t = node.targets[0]
            if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Subscript) \
                    and isinstance(t.value.value, ast.Name) and isinstance(t.slice, ast.Constant) \
                    and isinstance(t.value.slice, ast.Constant) and t.slice.value in ("action", "nargs"):
                value = node.value.value if isinstance(node.value, ast.Constant) else _name(node.value)
                out.setdefault((t.value.value.id, t.value.slice.value), {})[t.slice.value] = value
        return out

    def _kwargs(self, keywords: list[ast.keyword], kwarg_vars: dict, overrides: dict) -> dict:
        kw: dict = {}
        for k in keywords:
            if k.arg is None:
                kw.update(self._spread(k.value, kwarg_vars, overrides))
            elif k.arg in ("action", "nargs", "choices"):
                kw[k.arg] = self._value(k.arg, k.value)
        return kw

    def _spread(self, node: ast.AST, kwarg_vars: dict, overrides: dict) -> dict:
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and isinstance(node.slice, ast.Constant) and node.value.id in kwarg_vars:
            var, name = node.value.id, node.slice.value
            ffile, ann = kwarg_vars[var].get(name, (self.file, None))
            return {**field_kwargs(self.src, ffile, ann), **overrides.get((var, name), {})}
        if isinstance(node, ast.Dict):
            out: dict = {}
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:
                    out.update(self._spread(value, kwarg_vars, overrides))
                elif isinstance(key, ast.Constant) and key.value in ("action", "nargs", "choices"):
                    out[key.value] = self._value(key.value, value)
            return out
        return {}

    def _value(self, key: str, node: ast.AST):
        if key == "choices":
            return self._choices(node)
        if isinstance(node, ast.Constant):
            return node.value
        return _name(node) or "?"

    def _choices(self, node: ast.AST, depth: int = 0) -> list[str] | None:
        """Literal choices, through a name bound to a list or to ``get_args(<Literal alias>)``."""
        if depth > 4:
            return None
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            out: list[str] = []
            for e in node.elts:
                if isinstance(e, ast.Constant):
                    out.append(str(e.value))
                elif isinstance(e, ast.Starred):
                    more = self._choices(e.value, depth + 1)
                    if more is None:
                        return None
                    out += more
                else:
                    return None
            return out
        if isinstance(node, ast.Call) and _name(node.func) in ("list", "get_args", "sorted", "tuple") and node.args:
            inner = node.args[0]
            if _name(node.func) == "get_args":
                found = self.src.resolve(self.file, _name(inner)) if isinstance(inner, ast.Name) else None
                h = hints(self.src, found[0], found[1], Hints()) if found else None
                return [str(c) for c in h.literals[0]] if h and len(h.literals) == 1 and not h.other else None
            return self._choices(inner, depth + 1)
        if isinstance(node, ast.Name):
            found = self.src.resolve(self.file, node.id)
            if found and not isinstance(found[1], ast.ClassDef):
                saved, self.file = self.file, found[0]
                try:
                    return self._choices(found[1], depth + 1)
                finally:
                    self.file = saved
        return None

    def _add(self, options: list[str], kw: dict) -> None:
        action = kw.get("action")
        nargs = kw.get("nargs")
        boolean = action == "BooleanOptionalAction"
        if boolean or action in NO_VALUE_ACTIONS or nargs == 0:
            takes: bool | str = False
        elif nargs in ("?", "*"):
            takes = "optional"
        else:
            takes = True
        choices = kw.get("choices")
        fact = Flag(takes, tuple(sorted(set(choices))) if choices and not boolean else None, self.file)
        for opt in options:
            self.flags[opt] = fact
            if boolean and opt.startswith("--"):
                self.flags["--no-" + opt[2:]] = fact


def vllm_flags(src: Source) -> dict[str, Flag]:
    flags: dict[str, Flag] = {}
    serve = next((f for f in VLLM_SERVE_FILES if f in src.files), None)
    plan = [(f, names, None) for f, names in VLLM_PARSER_FUNCS.items()]
    if serve:
        plan.append((serve, {"subparser_init", "main"}, "serve_parser"))
    for file, names, receiver in plan:
        if file not in src.files:
            continue
        reader = ParserReader(src, file)
        for node in ast.walk(src.tree(file)):
            if isinstance(node, ast.FunctionDef) and node.name in names:
                reader.read_function(node, receiver)
        flags.update(reader.flags)
    return flags


# ---------------------------------------------------------------- metrics


def imported(src: Source, file: str) -> bool:
    """Whether another module of the package imports ``file`` (0.11 kept V0's metrics.py, unused)."""
    module = file[: -len(".py")].replace("/", ".")
    parent, leaf = module.rsplit(".", 1)
    folder = file.rsplit("/", 1)[0] + "/"
    for other, text in src.files.items():
        if other == file or not (module in text or (other.startswith(folder) and leaf in text)):
            continue
        for node in ast.walk(src.tree(other)):
            if isinstance(node, ast.Import) and any(a.name == module for a in node.names):
                return True
            if isinstance(node, ast.ImportFrom):
                base = src._absolute(other, node)
                if base == module or (base == parent and any(a.name == leaf for a in node.names)):
                    return True
    return False


def vllm_metrics(src: Source) -> dict[str, dict]:
    """``vllm:*`` metric name -> {type, files, hidden} of the metrics the server registers (in
    modules the package imports)."""
    out: dict[str, dict] = {}
    for file in sorted(src.files):
        if '"vllm:' not in src.files[file] or "/tests/" in file or "benchmark" in file \
                or not imported(src, file):
            continue
        tree = src.tree(file)
        hidden_nodes = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "show_hidden_metrics" in ast.unparse(node.test):
                hidden_nodes |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _name(node.func) in METRIC_CLASSES):
                continue
            name = next((k.value.value for k in node.keywords if k.arg == "name"
                         and isinstance(k.value, ast.Constant)), None)
            if name is None and node.args and isinstance(node.args[0], ast.Constant):
                name = node.args[0].value
            if not (isinstance(name, str) and name.startswith("vllm:")):
                continue
            entry = out.setdefault(name, {"type": METRIC_CLASSES[_name(node.func)], "files": set(), "hidden": True})
            entry["files"].add(file)
            entry["hidden"] = entry["hidden"] and id(node) in hidden_nodes
    return out


# ---------------------------------------------------------------- TensorRT-LLM (hand-checked)

TRTLLM_VERSION = "0.19.0"  # nvcr.io/nvidia/tensorrt-llm/release:0.19.0 (stacks/Pulumi.prod.yaml)
#: The pages the flags were read from. The 0.19.0 tag's own pages and tree were not reachable from
#: here (PyPI carries only a stub sdist of tensorrt-llm); each entry names the page it was checked on.
_SERVE = "https://nvidia.github.io/TensorRT-LLM/0.18.2/commands/trtllm-serve.html"
_BUILD = "https://nvidia.github.io/TensorRT-LLM/commands/trtllm-build.html"
_PLUGIN = "https://nvidia.github.io/TensorRT-LLM/legacy/python-api/tensorrt_llm.plugin.html"
_QUANTIZE = ("https://github.com/NVIDIA/TensorRT-LLM/blob/059c97c10c12e948e91676c8db3c9f137b0a2389/"
             "examples/quantization/quantize.py")

#: command -> page -> flags: "--flag" takes a value, "--flag!" takes none, "--flag=a|b" has choices.
TRTLLM_HAND_CHECKED: dict[str, dict[str, tuple[str, ...]]] = {
    "trtllm-serve": {_SERVE: (
        "--tokenizer", "--host", "--port", "--backend", "--max_beam_width", "--max_batch_size",
        "--max_num_tokens", "--max_seq_len", "--tp_size", "--pp_size", "--kv_cache_free_gpu_memory_fraction",
        "--trust_remote_code!",
    )},
    "trtllm-build": {_BUILD: (
        "--checkpoint_dir", "--model_config", "--build_config", "--model_cls_file", "--model_cls_name",
        "--output_dir", "--max_batch_size", "--max_input_len", "--max_seq_len", "--max_beam_width",
        "--max_num_tokens", "--opt_num_tokens", "--max_encoder_input_len", "--max_prompt_embedding_table_size",
        "--kv_cache_type", "--paged_kv_cache", "--input_timing_cache", "--output_timing_cache",
        "--profiling_verbosity=layer_names_only|detailed|none", "--strip_plan!", "--weight_sparsity!",
        "--weight_streaming!", "--fast_build!", "--workers",
        "--log_level=internal_error|error|warning|info|verbose|debug|trace", "--enable_debug_output!",
        "--visualize_network", "--dry_run!", "--monitor_memory!",
    ), _PLUGIN: ("--gemm_plugin",)},  # trtllm-build adds a flag per PluginConfig option
    "examples/quantization/quantize.py": {_QUANTIZE: (
        "--model_dir", "--nemo_ckpt_path", "--decoder_type=gptnext|llama", "--device=cuda|cpu",
        "--device_map=auto|sequential|cpu|gpu", "--calib_dataset", "--calib_tp_size", "--calib_pp_size",
        "--dtype=auto|float16|bfloat16|float32",
        "--qformat=nvfp4|fp8|int8_sq|int4_awq|w4a8_awq|int8_wo|int4_wo|full_prec", "--seed",
        "--tokenizer_max_seq_length", "--batch_size", "--calib_size", "--calib_max_seq_length", "--output_dir",
        "--tp_size", "--pp_size", "--cp_size", "--awq_block_size", "--kv_cache_dtype=int8|fp8|None",
        "--quantize_lm_head!", "--num_medusa_heads", "--num_medusa_layers", "--max_draft_len",
        "--medusa_hidden_act", "--medusa_model_dir", "--quant_medusa_head!", "--autoq_format",
        "--auto_quantize_bits", "--export_format=tensorrt_llm|hf",
    )},
}


def trtllm_table() -> dict:
    commands: dict[str, dict] = {}
    for command, pages in TRTLLM_HAND_CHECKED.items():
        facts: dict[str, dict] = {}
        for page, entries in pages.items():
            for entry in entries:
                name, _, choices = entry.partition("=")
                fact: dict = {"page": page, "value": not name.endswith("!")}
                if choices:
                    fact["choices"] = sorted(choices.split("|"))
                facts[name.rstrip("!")] = fact
        commands[command] = spans({TRTLLM_VERSION: facts}, [TRTLLM_VERSION])
    return {
        "commands": commands,
        "metrics": {},  # trtllm-serve's /metrics is JSON iteration statistics, not Prometheus text
        "versions": {TRTLLM_VERSION: {"image": f"nvcr.io/nvidia/tensorrt-llm/release:{TRTLLM_VERSION}",
                                      "source": "hand-checked: the documented flags, each with its page"}},
    }


# ---------------------------------------------------------------- the table


def spans(per_version: dict[str, dict], versions: list[str]) -> dict[str, list[dict]]:
    """name -> runs of consecutive versions (in ``versions`` order) with the same attributes."""
    out: dict[str, list[dict]] = {}
    names = sorted({n for facts in per_version.values() for n in facts})
    for name in names:
        runs: list[dict] = []
        previous = None
        for v in versions:
            fact = per_version[v].get(name)
            if fact is None:
                previous = None
                continue
            if previous is not None and fact == previous:
                runs[-1]["to"] = v
            else:
                runs.append({"from": v, "to": v, **fact})
            previous = fact
        out[name] = runs
    return out


def flag_fact(flag: Flag) -> dict:
    fact: dict = {"file": flag.file, "value": flag.takes_value}
    if flag.choices and len(flag.choices) <= 40:
        fact["choices"] = list(flag.choices)
    return fact


def build(cache: Path) -> dict:
    index = None
    versions: dict[str, dict] = {}
    flags: dict[str, dict] = {}
    metrics: dict[str, dict] = {}
    for version in VLLM_RELEASES:
        name = f"vllm-{version}.tar.gz"
        if not ((cache / name).exists() and (cache / name).with_suffix(".sha256").exists()) and index is None:
            index = simple_index("vllm")
        path, sha = sdist("vllm", version, cache, index)
        src = Source(python_sources(path, "vllm"))
        found = vllm_flags(src)
        flags[version] = {f: flag_fact(fl) for f, fl in found.items()}
        metrics[version] = {m: {"type": e["type"], "files": sorted(e["files"]), "hidden": e["hidden"]}
                            for m, e in vllm_metrics(src).items()}
        versions[version] = {"package": "vllm", "sdist": name, "sha256": sha,
                             "source": f"{INDEX.format(package='vllm')}"}
        print(f"vllm {version}: {len(found)} flags, {len(metrics[version])} metrics", file=sys.stderr)
    order = list(VLLM_RELEASES)
    trt = trtllm_table()
    return {
        "about": "Generated by scripts/engine_flags.py from the released sources of each version; do not edit. "
                 "Facts only: flag names, whether a flag takes a value (true, false, 'optional'), short choice "
                 "lists, Prometheus metric names. A span lists the versions from..to (in the order of "
                 "'versions') that have the entry with these attributes; 'file' is where it came from.",
        "engines": {
            "vllm": {
                "commands": {"vllm serve": spans(flags, order)},
                "metrics": spans(metrics, order),
                "versions": versions,
            },
            "tensorrt-llm": trt,
        },
    }


def render(table: dict) -> str:
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=CACHE, help="folder for the downloaded sdists")
    p.add_argument("--output", type=Path, default=OUTPUT)
    p.add_argument("--check", action="store_true", help="exit 1 if the committed table differs")
    args = p.parse_args(argv)
    text = render(build(args.cache))
    if args.check:
        same = args.output.exists() and args.output.read_text() == text
        print("up to date" if same else f"{args.output} differs from the sources; rerun the script")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
