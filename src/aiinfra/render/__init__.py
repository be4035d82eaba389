"""Render: pure functions (Cluster, Plan) -> artifacts ``{relative path: text}``.

Each target registers a renderer with :func:`renderer`; :func:`render_all` runs them all and
returns one sorted mapping. Renderers only print: they never refuse user input (the checks stage
did), never read or write files other than templates, never talk to clusters, and give
byte-identical output for the same input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiinfra.plan.cluster import ClusterPlan
from aiinfra.spec.cluster import Cluster

Artifacts = dict[str, str]
RenderFn = Callable[[Cluster, ClusterPlan], Artifacts]


@dataclass(frozen=True)
class Renderer:
    name: str
    fn: RenderFn
    description: str


_REGISTRY: dict[str, Renderer] = {}
FinishFn = Callable[[Cluster, Artifacts], Artifacts]
_FINISHERS: dict[str, FinishFn] = {}


def renderer(name: str, description: str = "") -> Callable[[RenderFn], RenderFn]:
    """Register ``fn`` as the renderer ``name`` (one module per target)."""

    def register(fn: RenderFn) -> RenderFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise RuntimeError(f"renderer '{name}' registered twice")
        _REGISTRY[name] = Renderer(name, fn, description or (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return register


def finisher(name: str) -> Callable[[FinishFn], FinishFn]:
    """Register a step that sees every renderer's artifacts (e.g. a kustomize root listing folders)."""

    def register(fn: FinishFn) -> FinishFn:
        _FINISHERS[name] = fn
        return fn

    return register


def registered() -> dict[str, Renderer]:
    _load_targets()
    return dict(_REGISTRY)


def render_all(cluster: Cluster, plan: ClusterPlan, only: list[str] | None = None) -> Artifacts:
    """Run every registered renderer (or those named in ``only``); paths must not collide."""
    out: Artifacts = {}
    owner: dict[str, str] = {}
    for name, r in sorted(registered().items()):
        if only is not None and name not in only:
            continue
        for path, text in r.fn(cluster, plan).items():
            if path in owner:
                raise RuntimeError(f"renderers '{owner[path]}' and '{name}' both write {path}")
            if path.startswith("/") or ".." in path.split("/"):
                raise RuntimeError(f"renderer '{name}' wrote outside the tree: {path}")
            owner[path] = name
            out[path] = text if text.endswith("\n") else text + "\n"
    if only is None:
        for name, fn in sorted(_FINISHERS.items()):
            for path, text in fn(cluster, dict(out)).items():
                if path in out:
                    raise RuntimeError(f"finisher '{name}' overwrites {path}")
                out[path] = text
    return dict(sorted(out.items()))


def _load_targets() -> None:
    """Import every module of this package: importing a target module registers its renderers."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")
