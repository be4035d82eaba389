"""The import contract of docs/architecture.md: catalog <- spec <- plan <- checks <- pipeline <- render
<- deploy <- cli, nothing imports a later stage (function-local imports included), and no package
of aiinfra takes part in an import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "aiinfra"
#: Stages in order; a module may import its own stage and earlier ones. The base modules
#: (errors, paths) are below every stage.
LAYERS = ["errors", "paths", "catalog", "spec", "plan", "checks", "pipeline", "render", "deploy", "cli"]
BASE = {"errors", "paths", "__init__"}


def _stage(module: str) -> str:
    """``aiinfra.render.serving`` -> ``render``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    """Every aiinfra module ``module`` imports, at any depth of its code (functions included)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("aiinfra")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                base = ".".join(parent[: len(parent) - node.level + 1] + ([base] if base else []))
            if base.startswith("aiinfra"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    modules = _modules()
    return {m for m in found if m in modules and m != module}


def _graph() -> dict[str, set[str]]:
    return {m: _imports(m, p) for m, p in _modules().items()}


def _rank(module: str) -> int:
    stage = _stage(module)
    return -1 if stage in BASE else LAYERS.index(stage)


def test_every_module_belongs_to_a_stage():
    unknown = sorted(m for m in _modules() if _stage(m) not in LAYERS and _stage(m) not in BASE)
    assert not unknown, f"place these modules in a stage of the contract: {unknown}"


def test_no_module_imports_a_later_stage():
    backward = sorted(f"{m} -> {dep}" for m, deps in _graph().items() for dep in deps
                      if _stage(dep) not in BASE and _rank(dep) > _rank(m))
    assert not backward, "imports against the flow:\n" + "\n".join(backward)


def test_no_import_cycle_between_modules():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # a package's __init__ that imports its own submodules is not a cycle of the flow
    real = [c for c in cycles if not any(_is_parent(a, b) or _is_parent(b, a) for a, b in zip(c, c[1:], strict=False))]
    assert not real, "import cycles:\n" + "\n".join(" -> ".join(c) for c in real)


def _is_parent(a: str, b: str) -> bool:
    return b.startswith(a + ".")


def test_the_contract_sees_function_local_imports(tmp_path):
    """The checker is not blind to an import hidden in a function body."""
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from aiinfra.render import render_all\n    return render_all\n")
    assert "aiinfra.render" in _imports("aiinfra.spec.mod", src)
