#!/usr/bin/env python3
"""Extract the key paths of each pinned Helm chart's values into
``src/aiinfra/catalog/data/chart_keys/<chart>-<version>.txt`` (facts, not a copy of the chart).

For every chart of ``versions.charts`` in ``stacks/*.yaml`` (or the ones named on the command
line), the chart is read, in this order, from:

1. its package (``.tgz``) in its Helm repository (:mod:`aiinfra.catalog.charts`): ``index.yaml``
   over HTTPS, or the OCI registry's manifest and chart layer;
2. its folder in the project's git repository at the release tag (:data:`SOURCES`), from a local
   git directory (``--git-root``: ``<root>/<owner>+<name>/repo``, e.g. a bare clone), read with
   ``git show``.

What is listed: every key path of ``values.yaml``, the ``properties`` of ``values.schema.json``
where the chart has one, and the ``.Values.a.b`` paths its templates read (charts document optional
keys as comments in values.yaml: gpu-operator's ``dcgmExporter.config``); a map the templates print whole into an object
(``toYaml .Values.x``) is open. A map whose default is ``{}``, a list, a scalar or
null is a leaf: anything below it is accepted. A map of free-form keys (:data:`FREE_FORM`:
annotations, labels, nodeSelector, resources, ...) and a schema object that does not forbid
``additionalProperties`` are written ``<path>.*`` (open). A dependency (subchart) is listed under
its name or alias from its own values when the source carries it (``charts/<name>``), else it is
open, and the header says so. Each file starts with the source (URL, tag, commit) and the sha256
of every values file read.

Usage: ``python scripts/chart_keys.py [--git-root DIR] [--output DIR] [chart ...]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aiinfra.catalog.charts import CHART_KEYS_DIR, CHARTS, OPEN, chart_keys_file, join_key_path  # noqa: E402


@dataclass(frozen=True)
class GitSource:
    repo: str  # owner/name on GitHub
    tag: str  # the release tag, with {version}
    path: str  # the chart's folder in the repository


# Where each chart's source lives (the chart's Chart.yaml `sources`/`home` and the projects' tags).
SOURCES = {
    "gpu-operator": GitSource("NVIDIA/gpu-operator", "{version}", "deployments/gpu-operator"),
    "network-operator": GitSource("Mellanox/network-operator", "v{version}", "deployment/network-operator"),
    "kueue": GitSource("kubernetes-sigs/kueue", "v{version}", "charts/kueue"),
    "lws": GitSource("kubernetes-sigs/lws", "v{version}", "charts/lws"),
    "kube-prometheus-stack": GitSource("prometheus-community/helm-charts", "kube-prometheus-stack-{version}",
                                       "charts/kube-prometheus-stack"),
    "keda": GitSource("kedacore/charts", "v{version}", "keda"),
    "tigera-operator": GitSource("projectcalico/calico", "{version}", "charts/tigera-operator"),
    "cilium": GitSource("cilium/cilium", "v{version}", "install/kubernetes/cilium"),
    "argo-cd": GitSource("argoproj/argo-helm", "argo-cd-{version}", "charts/argo-cd"),
}

# Maps whose keys are the user's (Kubernetes label/annotation maps, selectors, resource and
# security settings, probes): open even where the chart's default is not empty.
FREE_FORM = frozenset({
    "annotations", "labels", "podAnnotations", "podLabels", "commonLabels", "commonAnnotations",
    "additionalLabels", "nodeSelector", "resources", "securityContext", "podSecurityContext",
    "containerSecurityContext", "affinity", "livenessProbe", "readinessProbe", "startupProbe", "extraArgs",
})


@dataclass
class ChartSource:
    """One chart as read: its files (relative to the chart folder) and where they came from."""

    where: str
    files: dict[str, bytes]
    subcharts: dict[str, ChartSource] = field(default_factory=dict)


# ------------------------------------------------------------------ reading a chart

def _http(url: str, headers: dict[str, str] | None = None, timeout: float = 20) -> bytes:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (https only)
        return resp.read()


def _from_package(data: bytes, where: str) -> ChartSource:
    """A packaged chart: ``<name>/...`` files, subcharts as folders or nested .tgz under charts/."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                name = member.name.split("/", 1)[1] if "/" in member.name else member.name
                files[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    return _split_subcharts(files, where)


def _split_subcharts(files: dict[str, bytes], where: str) -> ChartSource:
    own = {n: b for n, b in files.items() if not n.startswith("charts/")}
    source = ChartSource(where, own)
    folders = {n.split("/")[1] for n in files if n.startswith("charts/") and n.count("/") >= 2}
    for folder in sorted(folders):
        prefix = f"charts/{folder}/"
        source.subcharts[folder] = _split_subcharts(
            {n.removeprefix(prefix): b for n, b in files.items() if n.startswith(prefix)}, f"{where} {prefix}")
    for name, blob in files.items():
        if name.startswith("charts/") and name.endswith(".tgz") and name.count("/") == 1:
            sub = _from_package(blob, f"{where} {name}")
            sub_name = yaml.safe_load(sub.files.get("Chart.yaml", b"{}")).get("name", name)
            source.subcharts[sub_name] = sub
    return source


def from_helm_repository(key: str, version: str) -> ChartSource | None:
    c = CHARTS[key]
    try:
        if c.is_oci:
            host, _, repo = c.repository.removeprefix("oci://").partition("/")
            ref = f"{repo}/{c.chart}"
            manifest = json.loads(_http(f"https://{host}/v2/{ref}/manifests/{version}",
                                        {"Accept": "application/vnd.oci.image.manifest.v1+json"}))
            (layer,) = [x for x in manifest["layers"] if x["mediaType"].endswith("helm.chart.content.v1.tar+gzip")]
            data = _http(f"https://{host}/v2/{ref}/blobs/{layer['digest']}")
            where = f"{c.repository}/{c.chart}:{version}"
        else:
            index = yaml.safe_load(_http(f"{c.repository}/index.yaml"))
            (entry,) = [e for e in index["entries"][c.chart] if str(e["version"]) == version]
            url = entry["urls"][0]
            url = url if url.startswith("https://") else f"{c.repository}/{url}"
            data = _http(url)
            digest = entry.get("digest")
            if digest and hashlib.sha256(data).hexdigest() != digest:
                raise ValueError(f"{url}: sha256 differs from the repository index")
            where = url
    except (OSError, ValueError, KeyError) as exc:
        print(f"{key} {version}: no package from {c.repository} ({exc}); trying git", file=sys.stderr)
        return None
    return _from_package(data, where)


def from_git(key: str, version: str, git_root: Path) -> ChartSource | None:
    src = SOURCES.get(key)
    if src is None:
        return None
    owner, name = src.repo.split("/")
    git_dir = git_root / f"{owner}+{name}" / "repo"
    tag = src.tag.format(version=version)

    def git(*args: str) -> bytes:
        return subprocess.run(["git", "--git-dir", str(git_dir), *args], check=True, capture_output=True).stdout

    try:
        commit = git("rev-parse", f"{tag}^{{commit}}").decode().strip()
        names = git("ls-tree", "-r", "--name-only", commit, "--", src.path).decode().splitlines()
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"{key} {version}: no tag {tag} in {git_dir} ({exc})", file=sys.stderr)
        return None
    wanted = [n for n in names if n.rsplit("/", 1)[-1] in ("values.yaml", "values.schema.json", "Chart.yaml")
              or ("/templates/" in n and n.endswith((".yaml", ".tpl", ".txt", ".json")))]
    files = {n.removeprefix(src.path + "/"): git("show", f"{commit}:{n}") for n in wanted}
    return _split_subcharts(files, f"https://github.com/{src.repo}/tree/{tag}/{src.path} (commit {commit})")


# ------------------------------------------------------------------ key paths

def value_paths(values: object, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every key path of a values document; ``<path>.*`` for free-form maps with defaults."""
    out: set[tuple[str, ...]] = set()
    if not isinstance(values, dict):
        return out
    for k, v in values.items():
        path = (*prefix, str(k))
        out.add(path)
        if isinstance(v, dict) and v:
            if str(k) in FREE_FORM:
                out.add((*path, OPEN))
            else:
                out |= value_paths(v, path)
    return out


def schema_paths(schema: object, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The ``properties`` of a JSON schema, recursively; open where other keys are allowed."""
    out: set[tuple[str, ...]] = set()
    if not isinstance(schema, dict):
        return out
    props = schema.get("properties")
    if isinstance(props, dict):
        for k, sub in props.items():
            path = (*prefix, k)
            out.add(path)
            out |= schema_paths(sub, path)
        if prefix and schema.get("additionalProperties", True) is not False:
            out.add((*prefix, OPEN))
    return out


VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
# a map the templates print whole into an object (``toYaml .Values.x``, ``omit .Values.x "k"``):
# its keys are the object's fields (tigera-operator's ``installation`` is the Installation's spec)
PASSED_WHOLE = re.compile(r"\b(?:toYaml|omit|tpl|merge|mergeOverwrite)\s+\(?\s*\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*[|)\s\"}]")


def template_paths(files: dict[str, bytes], known: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """The ``.Values.a.b`` paths the chart's own templates read, where values.yaml leaves them out;
    a path under a leaf or an open map of values.yaml adds nothing (that stays open)."""
    maps = {p[:-1] for p in known}
    out: set[tuple[str, ...]] = set()
    for name, blob in sorted(files.items()):
        if not name.startswith("templates/"):
            continue
        for match in VALUES_REF.finditer(blob.decode("utf-8", "replace")):
            path = tuple(match.group(1).strip(".").split("."))
            for i in range(1, len(path) + 1):
                parent = path[: i - 1]
                if parent and ((parent in known and parent not in maps) or (*parent, OPEN) in known):
                    break  # below a leaf or an open map of values.yaml
                out.add(path[:i])
    for name, blob in sorted(files.items()):
        if name.startswith("templates/"):
            for match in PASSED_WHOLE.finditer(blob.decode("utf-8", "replace")):
                path = tuple(match.group(1).strip(".").split("."))
                if path in maps or (path in out and path not in known):
                    out.add((*path, OPEN))
    return out - known


def chart_paths(source: ChartSource, notes: list[str], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    where = "/".join(prefix) or "the chart's"
    values_text = source.files.get("values.yaml", b"")
    if values_text:
        notes.append(f"sha256 of {where} values.yaml: {hashlib.sha256(values_text).hexdigest()}")
    own = value_paths(yaml.safe_load(values_text) or {})
    own |= template_paths(source.files, own)
    paths = {(*prefix, *p) for p in own}
    if "values.schema.json" in source.files:
        blob = source.files["values.schema.json"]
        notes.append(f"sha256 of {where} values.schema.json: {hashlib.sha256(blob).hexdigest()}")
        paths |= {(*prefix, *p) for p in schema_paths(json.loads(blob))}
    meta = yaml.safe_load(source.files.get("Chart.yaml", b"{}")) or {}
    for dep in meta.get("dependencies") or []:
        key = dep.get("alias") or dep["name"]
        paths.add((*prefix, key))
        sub = source.subcharts.get(dep["name"])
        if sub is None:
            notes.append(f"open: subchart {dep['name']} {dep.get('version', '')} is not in the source; "
                         f"any key below {key} is accepted")
            paths.add((*prefix, key, OPEN))
        else:
            paths |= chart_paths(sub, notes, (*prefix, key))
    # Helm passes `global` to every chart and subchart
    paths.add((*prefix, "global"))
    return paths


def render_file(key: str, version: str, source: ChartSource) -> str:
    notes: list[str] = []
    paths = chart_paths(source, notes)
    lines = sorted(join_key_path(p) for p in paths)
    header = [f"Key paths of the values of Helm chart {key} {version}, one per line; a path ending in "
              f".{OPEN} accepts any key below it.", f"Extracted by scripts/chart_keys.py from {source.where}", *notes]
    return "".join(f"# {h}\n" for h in header) + "".join(f"{line}\n" for line in lines)


def pinned_charts() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for stack in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        bp = (yaml.safe_load(stack.read_text())["config"]).get("aiinfra:cluster") or {}
        for key, version in ((bp.get("versions") or {}).get("charts") or {}).items():
            if key in CHARTS and not CHARTS[key].is_kustomize:
                out.setdefault(key, set()).add(str(version))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("charts", nargs="*", help="chart keys (default: every chart pinned in stacks/)")
    parser.add_argument("--git-root", type=Path, default=Path("/work/.mirror"),
                        help="folder of git directories <owner>+<name>/repo")
    parser.add_argument("--output", type=Path, default=CHART_KEYS_DIR)
    args = parser.parse_args(argv)
    failed = []
    for key, versions in sorted(pinned_charts().items()):
        if args.charts and key not in args.charts:
            continue
        for version in sorted(versions):
            source = from_helm_repository(key, version) or from_git(key, version, args.git_root)
            if source is None:
                failed.append(f"{key} {version}")
                continue
            out = args.output / chart_keys_file(key, version).name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(render_file(key, version, source))
            print(f"wrote {out}")
    if failed:
        print(f"no source reachable for: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
